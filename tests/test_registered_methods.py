"""Every method id this distribution registers passes the contract (as timm tests every model).

The ids come from the entry-point registry, presets included, so a new method or preset is tested
the moment it is declared in ``pyproject.toml``; nothing here names a method. Batch methods run the
``BatchMethodTesterMixin`` checks, offline methods the ``OfflineMethodTesterMixin`` checks on a tiny
random Stable Diffusion built from configs (``augbench.testing``), artifacts included.
"""

from __future__ import annotations

import re

from augbench.contract import BatchMethod
from augbench.registry import default_registry
from augbench.testing import BatchMethodTesterMixin, OfflineMethodTesterMixin

DISTRIBUTION = "augbench"


def _contract_classes() -> dict[str, type]:
    registry = default_registry()
    classes = {}
    for method_id in registry.ids(include_presets=True):
        family = method_id.split(".")[0]
        if registry.entry(family).distribution != DISTRIBUTION:
            continue  # other distributions test their methods with the same mixins
        cls = registry.get_class(family)
        mixin = BatchMethodTesterMixin if issubclass(cls, BatchMethod) else OfflineMethodTesterMixin
        name = "TestContract_" + re.sub(r"\W", "_", method_id)
        classes[name] = type(name, (mixin,), {"method_id": method_id, "__module__": __name__})
    return classes


CONTRACT_CLASSES = _contract_classes()
globals().update(CONTRACT_CLASSES)


def test_every_built_in_family_is_covered():
    families = {name for name in default_registry().names()
                if default_registry().entry(name).distribution == DISTRIBUTION}
    covered = {cls.method_id.split(".")[0] for cls in CONTRACT_CLASSES.values()}
    assert families and covered == families
