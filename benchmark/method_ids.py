"""Method ids: ``family``, ``family.preset`` and compositions ``offline+batch`` (DESIGN.md, "The method contract").

The one parser of method ids (timm's ``arch.tag``; METHODS_SPEC §3.2 for ``sd_random+cutmix``). The
registry, the stages, the suites' entries (``diff_ii(split_ratio=0.1)``), the report tables and the
contract tests all read ids through it, so an id means the same everywhere. Standard library only: the
torch-free report and CLI paths use it.
"""

from __future__ import annotations

import re

from augbench.plugins import SNAKE_CASE, RegistryError

__all__ = ["MethodIdError", "format_method_id", "method_family", "parse_method_id"]

_NAME_RE = re.compile(SNAKE_CASE)


class MethodIdError(RegistryError, ValueError):
    """A method id is malformed (the message shows the accepted forms)."""


def parse_method_id(method_id: str) -> list[tuple[str, str | None]]:
    """Split ``"a.p+b"`` into ``[("a", "p"), ("b", None)]``.

    Raises:
        MethodIdError: an empty part, more than one dot in a part, or a name that is not lowercase
            snake_case.
    """
    parts = []
    for raw in str(method_id).split("+"):
        family, _, preset = raw.strip().partition(".")
        if not _NAME_RE.match(family) or (preset and not _NAME_RE.match(preset)) or (_ and not preset):
            raise MethodIdError(
                f"malformed method id {method_id!r}: expected 'family', 'family.preset' or a composition "
                "'offline+batch' (lowercase snake_case names)"
            )
        parts.append((family, preset or None))
    return parts


def format_method_id(parts: list[tuple[str, str | None]]) -> str:
    """The id of ``parts`` (the inverse of :func:`parse_method_id`)."""
    return "+".join(f"{family}.{preset}" if preset else family for family, preset in parts)


def method_family(method_id: str) -> str:
    """The family of an id's first part, the one that makes the synthetic set in a composition.

    ``sd_random+cutmix`` -> ``sd_random``, ``diff_mix.uniform_strength`` -> ``diff_mix``; a suite entry's
    parameters are ignored (``diff_ii(split_ratio=0.1)`` -> ``diff_ii``).

    Raises:
        MethodIdError: the id is malformed.
    """
    return parse_method_id(str(method_id).split("(", 1)[0].split("+", 1)[0])[0][0]
