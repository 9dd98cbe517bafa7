"""One registry type for everything a third party can add: methods, protocols, artifact kinds, dataset
readers, profiles, recipes, schedulers (DESIGN.md, "Layout"; issue 22 item 2).

A :class:`Registry` holds named entries from three sources, all looked up the same way:

* **entry points** of one group (``augbench.methods``, ``augbench.protocols``, ...), read from
  distribution metadata on first use; our own ``pyproject.toml`` declares the built-ins there, so a
  third-party package is discovered exactly like a built-in;
* **built-ins** given as ``"module:attr"`` strings (kinds the harness ships without an entry-point
  group of their own);
* **in-process** registrations (tests, notebooks).

It is **lazy** (lm-eval's ``Registry`` with ``EntryPoint`` placeholders): listing names imports
nothing; a target is imported on first :meth:`Registry.get`. It keeps **provenance** (pluggy's
``list_plugin_distinfo``): the distribution that supplied each name, so the same name from two
distributions raises :class:`DuplicateNameError` naming both (timm only warns; we refuse). A name it
does not know raises :class:`UnknownNameError` whose message comes from the one :func:`did_you_mean`.

This module imports only the standard library: the method author's API and the torch-free CLI paths
(``augbench methods``) can use it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as importlib_metadata
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "IN_PROCESS",
    "DuplicateNameError",
    "Entry",
    "PluginLoadError",
    "Registry",
    "RegistryError",
    "UnknownNameError",
    "did_you_mean",
    "import_target",
]

T = TypeVar("T")
IN_PROCESS = "<in-process>"
BUILT_IN = "augbench"
#: how close a name must be to be suggested (difflib ratio); one cutoff for every "did you mean"
SUGGESTION_CUTOFF = 0.6
#: the names a registry accepts unless it says otherwise
SNAKE_CASE = r"^[a-z][a-z0-9_]*$"


class RegistryError(LookupError):
    """A name could not be registered or resolved."""


class UnknownNameError(RegistryError, KeyError):
    """No entry with that name (the message suggests close matches)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(RegistryError):
    """Two distributions provide the same name."""


class PluginLoadError(RegistryError):
    """An entry's target failed to import or is not what the registry holds."""


def did_you_mean(name: str, known: Iterable[str], n: int = 1) -> str:
    """``" (did you mean 'x'?)"`` for the known name closest to ``name``, else ``""``.

    The one suggestion rule of the project (unknown methods, presets, protocols, suite keys, dataset
    cards, artifact kinds, config parameters all use it), so a typo gets the same help everywhere:
    difflib's ratio with one cutoff (:data:`SUGGESTION_CUTOFF`), then, when nothing is that close, a
    shortened or lengthened spelling (``prob`` for ``probability``). A suggestion equal to ``name``
    itself is never made (a key in the wrong table is a placement error, not a typo). The text goes
    right after the quoted name: ``f"unknown method {name!r}{did_you_mean(name, known)}"``.

    Args:
        name: what the user wrote.
        known: the valid names.
        n: at most this many suggestions (``" (did you mean 'a' or 'b'?)"``).
    """
    name = str(name)
    candidates = sorted({str(k) for k in known} - {name})
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=SUGGESTION_CUTOFF)
    if not close and len(name) >= 3:
        close = [k for k in candidates if len(k) >= 3 and (name.startswith(k) or k.startswith(name))][:n]
    if not close:
        return ""
    quoted = [repr(c) for c in close]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f" (did you mean {listed}?)"


def import_target(value: str) -> Any:
    """The object named by ``"package.module:attr.sub"`` (imports the module)."""
    module, _, attr = value.partition(":")
    obj: Any = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Entry:
    """One registered name, before (or after) its target is imported.

    Attributes:
        name: the registered name (entry-point name).
        distribution: the distribution that supplied it (``augbench`` for built-ins, ``<in-process>``
            for :meth:`Registry.register`).
        value: ``"module:attr"`` (for in-process objects, their qualified name).
        version: the distribution's version, when known.
    """

    name: str
    distribution: str
    value: str
    version: str | None = None


def _dist_name(dist: Any) -> str:
    try:
        name = dist.metadata["Name"]
    except Exception:  # noqa: BLE001 - broken metadata: fall back to the attribute
        name = None
    return str(name or getattr(dist, "name", None) or "<unknown>")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _scan(distributions: Iterable[Any]) -> list[tuple[str, str | None, Any]]:
    """``(distribution name, version, entry point)`` of every entry point, each distribution once.

    The same distribution can be visible twice on ``sys.path`` (an editable install and a build
    directory); ``importlib.metadata.entry_points()`` keeps the first, so do we.
    """
    out, seen = [], set()
    for dist in distributions:
        dname = _dist_name(dist)
        if _normalize(dname) in seen:
            continue
        seen.add(_normalize(dname))
        out.extend((dname, getattr(dist, "version", None), ep) for ep in dist.entry_points)
    return out


_INSTALLED: dict[tuple[str, ...], list[tuple[str, str | None, Any]]] = {}
_INSTALLED_LOCK = threading.Lock()


def _installed_entry_points() -> list[tuple[str, str | None, Any]]:
    """:func:`_scan` of the installed distributions, read once per ``sys.path`` and shared by every
    registry (reading the metadata takes ~80 ms; methods, kinds, readers, profiles ... each need it)."""
    key = tuple(sys.path)
    with _INSTALLED_LOCK:
        if key not in _INSTALLED:
            _INSTALLED[key] = _scan(importlib_metadata.distributions())
        return _INSTALLED[key]


class Registry(Generic[T]):
    """A lazy, thread-safe registry of named ``T`` from entry points, built-ins and registrations.

    Args:
        what: what the entries are, for messages (``"method"``, ``"protocol"``).
        group: the entry-point group to discover (``None``: built-ins and registrations only).
        builtins: ``{name: "module:attr" | object}`` the harness ships outside any entry-point group.
        discover: read entry points on first use (``False``: only built-ins and ``register``).
        distributions: callable returning the distributions to scan (default
            ``importlib.metadata.distributions``, read once per process for all registries); each needs
            ``metadata["Name"]``, ``version`` and ``entry_points``. Tests inject fakes here (pluggy's
            monkeypatch style).
        adapt: called with ``(name, obj)`` after a target is imported; returns the ``T`` to hold (e.g. a
            module's table of builders turned into the entry for ``name``). Default: the object itself.
        validate: called with ``(name, obj)`` after ``adapt``; raises ``TypeError`` or ``ValueError``
            when the object is not a ``T`` (reported as :class:`PluginLoadError`).
        name_pattern: the names this registry accepts (default lowercase snake_case).
        hint: appended to the unknown-name message (e.g. how a third party registers one).

    Example:
        >>> reg = Registry("scheduler", builtins={"ddim": "diffusers:DDIMScheduler"}, discover=False)
        >>> reg.names()
        ['ddim']
    """

    #: what an unknown name / a name provided twice raises (a subclass names its own kind in tracebacks)
    unknown_error: type[UnknownNameError] = UnknownNameError
    duplicate_error: type[DuplicateNameError] = DuplicateNameError

    def __init__(
        self,
        what: str,
        group: str | None = None,
        *,
        builtins: Mapping[str, Any] | None = None,
        discover: bool = True,
        distributions: Callable[[], Iterable[Any]] | None = None,
        adapt: Callable[[str, Any], T] | None = None,
        validate: Callable[[str, Any], None] | None = None,
        name_pattern: str = SNAKE_CASE,
        hint: str = "",
    ):
        self.what = what
        self.group = group
        self._discover = discover and group is not None
        self._distributions = distributions
        self._adapt = adapt
        self._validate = validate
        self._name_re = re.compile(name_pattern)
        self._hint = hint or (f" Third parties register one through the {group!r} entry-point group." if group else "")
        self._entries: dict[str, Entry] = {}
        self._targets: dict[str, Any] = {}  # name -> EntryPoint | "module:attr" | object
        self._loaded: dict[str, T] = {}
        self._discovered = False
        self._lock = threading.RLock()
        for name, target in (builtins or {}).items():
            self._add(Entry(name, BUILT_IN, self._value_of(target)), target)

    # -- discovery ------------------------------------------------------------------------------

    def _ensure_discovered(self) -> None:
        if self._discovered or not self._discover:
            return
        with self._lock:
            if self._discovered:
                return
            found = _installed_entry_points() if self._distributions is None else _scan(self._distributions())
            for dname, version, ep in found:
                if ep.group == self.group:
                    self._add(Entry(ep.name, dname, ep.value, version), ep, from_entry_point=True)
            self._discovered = True

    @staticmethod
    def _value_of(target: Any) -> str:
        if isinstance(target, str):
            return target
        return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', type(target).__qualname__)}"

    def _add(self, entry: Entry, target: Any, replace: bool = False, from_entry_point: bool = False) -> None:
        if not self._name_re.match(entry.name):
            expected = "lowercase snake_case" if self._name_re.pattern == SNAKE_CASE else self._name_re.pattern
            raise RegistryError(f"{self.what} name {entry.name!r} from {entry.distribution} is not valid: "
                                f"expected {expected}")
        old = self._entries.get(entry.name)
        if old is not None and from_entry_point and old.distribution == BUILT_IN and old.value == entry.value:
            return  # our own built-in, also declared in our entry-point group: one entry
        if old is not None and not replace:
            raise self.duplicate_error(
                f"{self.what} {entry.name!r} is provided twice: by {old.distribution!r} ({old.value}) and by "
                f"{entry.distribution!r} ({entry.value}). Uninstall one of them or rename the entry point"
                + (f" in the {self.group!r} group." if self.group else ".")
            )
        self._entries[entry.name] = entry
        self._targets[entry.name] = target
        self._loaded.pop(entry.name, None)

    def register(self, name: str, target: T | str, *, distribution: str = IN_PROCESS, replace: bool = False) -> None:
        """Register ``target`` (an object or a lazy ``"module:attr"``) under ``name`` in-process.

        Raises:
            DuplicateNameError: ``name`` exists and ``replace`` is false.
        """
        self._ensure_discovered()
        with self._lock:
            self._add(Entry(name, distribution, self._value_of(target)), target, replace=replace)

    def unregister(self, name: str) -> None:
        """Forget ``name`` (tests that register temporarily)."""
        with self._lock:
            self._entries.pop(name, None)
            self._targets.pop(name, None)
            self._loaded.pop(name, None)

    # -- listing (no imports) -------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """All entries, sorted by name; imports nothing."""
        self._ensure_discovered()
        return [self._entries[n] for n in sorted(self._entries)]

    def names(self) -> list[str]:
        """Registered names, sorted; imports nothing."""
        return [e.name for e in self.entries()]

    def __contains__(self, name: object) -> bool:
        self._ensure_discovered()
        return isinstance(name, str) and name in self._entries

    def __len__(self) -> int:
        return len(self.entries())

    def entry(self, name: str) -> Entry:
        """The entry of ``name``.

        Raises:
            UnknownNameError: no such name (with close matches and the known names).
        """
        self._ensure_discovered()
        if name not in self._entries:
            raise self.unknown_error(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: str, known: Iterable[str] | None = None, what: str | None = None) -> str:
        """The one-line message for an unknown ``name`` among ``known`` (default: this registry's names)."""
        known = sorted(self._entries if known is None else known)
        return (f"unknown {what or self.what} {name!r}{did_you_mean(name, known)}. "
                f"Known: {', '.join(known) or '(none)'}.{self._hint}")

    # -- loading --------------------------------------------------------------------------------

    def get(self, name: str) -> T:
        """The object registered as ``name`` (imports its module on first use).

        Raises:
            UnknownNameError: no such name.
            PluginLoadError: the target does not import, or ``validate`` refuses it; the message names
                the entry point and its distribution.
        """
        entry = self.entry(name)
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            target = self._targets[name]
            try:
                if isinstance(target, str):
                    obj = import_target(target)
                elif hasattr(target, "load") and hasattr(target, "group"):  # an EntryPoint
                    obj = target.load()
                else:
                    obj = target
                if self._adapt is not None:
                    obj = self._adapt(name, obj)
            except Exception as exc:
                raise PluginLoadError(
                    f"{self.what} {name!r} from {entry.distribution!r} failed to load {entry.value!r}"
                    + (f" (entry point in {self.group!r})" if self.group else "") + f": {type(exc).__name__}: {exc}"
                ) from exc
            if self._validate is not None:
                try:
                    self._validate(name, obj)
                except (TypeError, ValueError) as exc:
                    raise PluginLoadError(f"{self.what} {name!r} from {entry.distribution!r} ({entry.value}): "
                                          f"{exc}") from exc
            self._loaded[name] = obj
            return obj

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` for every entry (imports every target)."""
        return [(n, self.get(n)) for n in self.names()]

    # -- dict-style access: the registries that replaced plain dicts (``RECIPES``, ``PROFILES``,
    # ``ARTIFACT_KINDS``) keep their callers ------------------------------------------------------

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __setitem__(self, name: str, target: T) -> None:
        """``register(name, target, replace=True)``: an in-process override (notebooks, studies)."""
        self.register(name, target, replace=True)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def keys(self) -> list[str]:
        return self.names()

    def pop(self, name: str, *default: Any) -> Any:
        """Unregister ``name`` and return its object (``default`` when there is none)."""
        if name not in self.names():
            if default:
                return default[0]
            raise self.unknown_error(self.unknown_message(name))
        obj = self.get(name)
        self.unregister(name)
        return obj
