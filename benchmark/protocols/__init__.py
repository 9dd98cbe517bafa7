"""Evaluation protocols as objects (METHODS_SPEC §5.4, §5.5, §6; DESIGN.md, "Protocols and evaluation").

Each protocol is a :class:`~augbench.protocols.base.Protocol` subclass in its own module
(``few_shot``, ``long_tail``, ``waterbirds``, ``full_data``); the splits every protocol shares live in
``splits`` and the accuracy metrics in ``metrics``. :data:`PROTOCOLS` finds them by name: the
built-ins and any third-party package's ``augbench.protocols`` entry points, through the one
``augbench.plugins.Registry`` (lazy: listing names imports no protocol module). A third party adds one
without touching the harness::

    [project.entry-points."augbench.protocols"]
    my_protocol = "my_package.protocols:MyProtocol"

This package module imports only ``augbench.plugins`` (the standard library), so naming a protocol is
cheap everywhere.
"""

from __future__ import annotations

from typing import Any

from augbench.plugins import Registry

__all__ = ["BUILTIN_PROTOCOLS", "PROTOCOLS", "get_protocol", "protocol_names", "protocol_registry"]

BUILTIN_PROTOCOLS = {
    "few_shot": "augbench.protocols.few_shot:FewShot",
    "full_data": "augbench.protocols.full_data:FullData",
    "long_tail": "augbench.protocols.long_tail:LongTail",
    "waterbirds": "augbench.protocols.waterbirds:Waterbirds",
}


def _check_protocol_class(name: str, obj: Any) -> None:
    """An entry point must name a concrete ``Protocol`` subclass registered under its own ``name``."""
    import inspect

    from augbench.protocols.base import Protocol

    if not (isinstance(obj, type) and issubclass(obj, Protocol)):
        raise TypeError(f"expected a subclass of augbench.protocols.base.Protocol, got {obj!r}")
    if inspect.isabstract(obj):
        raise TypeError(f"{obj.__qualname__} is abstract (implement draw_training)")
    if obj.name != name:
        raise ValueError(f"{obj.__qualname__}.name is {obj.name!r}; it must equal the entry-point name {name!r}")


def protocol_registry(**kwargs: Any) -> Registry:
    """A protocol registry: the built-ins plus the ``augbench.protocols`` entry points (``kwargs`` go to
    ``Registry``, e.g. ``distributions=`` in tests)."""
    return Registry("protocol", "augbench.protocols", builtins=BUILTIN_PROTOCOLS, validate=_check_protocol_class,
                    **kwargs)


#: The protocols of this process: built-ins and installed plugins.
PROTOCOLS = protocol_registry()


def get_protocol(name: str) -> Any:
    """The protocol class registered as ``name`` (a ``type[Protocol]``).

    Raises:
        augbench.plugins.UnknownNameError: no such protocol (the message suggests close names).
        augbench.plugins.PluginLoadError: its module fails to import (the message names the entry point
            and its distribution).
    """
    return PROTOCOLS.get(name)


def protocol_names() -> list[str]:
    """Registered protocol names, sorted; imports no protocol module."""
    return PROTOCOLS.names()
