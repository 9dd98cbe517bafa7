"""The samplers offline methods may name: a ``plugins.Registry`` of diffusers scheduler classes.

``make_scheduler(name, base_config)`` builds one from the pipeline's own scheduler config (never
hand-written), with SD v1.5's sampler settings (METHODS_SPEC §1.1) for keys that config lacks.
Built-ins: ``dpmsolver++`` (DPM-Solver++ multistep, METHODS_SPEC §3.1, §3.3), ``ddim``, ``pndm``;
a third party adds one through the ``augbench.schedulers`` entry-point group (its value: a diffusers
scheduler class, or a :class:`SchedulerChoice`).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Mapping
from typing import Any, NamedTuple

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler

from augbench.plugins import Registry, UnknownNameError

__all__ = ["SCHEDULERS", "SD15_SAMPLER_KEYS", "SchedulerChoice", "make_scheduler", "scheduler_from_config"]


class SchedulerChoice(NamedTuple):
    """A diffusers scheduler class and the config values that select its variant."""

    cls: type
    config: Mapping[str, Any] = types.MappingProxyType({})


def _as_choice(name: str, obj: Any) -> SchedulerChoice:
    """An entry point may name the scheduler class alone (no extra config)."""
    return obj if isinstance(obj, SchedulerChoice) else SchedulerChoice(obj)


def _check_choice(name: str, choice: SchedulerChoice) -> None:
    if not (isinstance(choice.cls, type) and hasattr(choice.cls, "from_config")):
        raise TypeError(f"expected a diffusers scheduler class (with from_config), got {choice.cls!r}")


SCHEDULERS: Registry[SchedulerChoice] = Registry(
    "scheduler",
    "augbench.schedulers",
    builtins={
        "dpmsolver++": SchedulerChoice(DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
        "ddim": SchedulerChoice(DDIMScheduler),
        "pndm": SchedulerChoice(PNDMScheduler),
    },
    adapt=_as_choice,
    validate=_check_choice,
    name_pattern=r"^[a-z][a-z0-9_+]*$",  # "dpmsolver++"
)

# SD v1.5's sampler settings (METHODS_SPEC §1.1) that a config saved by another scheduler class may
# lack (the embedded world saves DPM-Solver's, which has no clip_sample / set_alpha_to_one /
# skip_prk_steps); a missing key would otherwise take the class default (DDIM: clip_sample=True,
# set_alpha_to_one=True; PNDM: PRK warm-up steps).
SD15_SAMPLER_KEYS: dict[str, Any] = {"clip_sample": False, "set_alpha_to_one": False, "skip_prk_steps": True}


def scheduler_from_config(cls: type, base_config: Any, **extra: Any) -> Any:
    """``cls.from_config(base_config, **extra)``, SD v1.5's values for keys the config lacks.

    Keys ``cls`` does not take are dropped first (diffusers would warn about each of them).
    """
    accepted = inspect.signature(cls.__init__).parameters
    config = {k: v for k, v in base_config.items() if k in accepted or k.startswith("_")}
    missing = {k: v for k, v in SD15_SAMPLER_KEYS.items() if k in accepted and k not in config}
    return cls.from_config(config, **{**missing, **extra})


def make_scheduler(name: str, base_config: Any):
    """A diffusers scheduler ``name`` built from the pipeline's scheduler config (never hand-written).

    Keys of ``SD15_SAMPLER_KEYS`` that the config lacks take SD v1.5's values, not the class defaults.

    Raises:
        ValueError: an unknown name (with the closest known one).
    """
    try:
        cls, extra = SCHEDULERS.get(name)
    except UnknownNameError as exc:
        raise ValueError(str(exc)) from None
    return scheduler_from_config(cls, base_config, **extra)
