"""Suites, cells and run options: the typed, torch-free description of a run (DESIGN.md, "Data flow").

A *suite* (``benchmark/suites/<name>.toml``) declares datasets, protocol parameters, methods, seeds,
the classifier recipe and how synthetic data joins training; ``[profiles.<name>]`` overlays it for a
profile, and ``[profiles.<p>.methods_params.<family>]`` / ``[profiles.<p>.training.<family>]`` refine
the suite's tables key by key. A ``methods`` entry may carry its own parameters, ``diff_ii(split_ratio=0.1)``
(TOML values, :func:`parse_method_entry`), so one family with several values gives several rows (a
parameter sweep, METHODS_SPEC §9.6); they refine ``[methods_params.<family>]`` of the part that makes the
synthetic set, and the entry as written is the row's name. :func:`load_suite` parses the file into a frozen :class:`Suite` and
rejects unknown keys with a did-you-mean before any cell runs (a typo such as ``replacment_mode``
used to be ignored silently), and builds the suite's protocol object (``augbench.protocols``: a built-in
or a plugin's) so that a protocol parameter it does not take or a bad value fails at load too;
:func:`validate_suite` then checks what needs the registry and the dataset cards (method families and
presets, datasets, recipes). The grid of cells (:func:`plan_cells`) is the protocol's.

This module imports nothing heavy, so the CLI, the reports and the executors can use it freely.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augbench.method_ids import MethodIdError, parse_method_id
from augbench.plugins import RegistryError, did_you_mean
from augbench.protocols import get_protocol
from augbench.protocols.base import Protocol, ProtocolError

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"
#: [suite] keys that are parameters of built-in protocols only (see :meth:`Suite.protocol_object`)
PROTOCOL_FIELDS = ("shots", "imbalance_factors", "class_group_thresholds")
EXECUTORS = ("local", "ray")

# Keys of [training] / [training.<family>] (METHODS_SPEC §4); the values are checked by
# augbench.contract.TrainingIntegration when a cell resolves them.
TRAINING_KEYS = ("replacement_mode", "replacement_p", "labels", "label_gamma", "label_sigma")
# Keys of [training] / [training.<family>] that set the classifier's loss for any method, synthetic set or
# not (DRW, METHODS_SPEC §5.4; checked by augbench.training.config.check_class_weighting)
WEIGHTING_KEYS = ("class_weighting", "drw_beta", "drw_start")
# Keys of [profile]: the profile fields a suite may refine (generation and classifier sizes, sampler
# defaults, weight precision); hashed into every stage key they change (``Suite.profile_key``)
PROFILE_KEYS = ("image_size", "classifier_size", "num_inference_steps", "guidance_scale", "dtype")
# Tables of [concepts.<kind>]: keys that refine the profile's concept-learning recipe of that kind
# (augbench.diffusion.concepts.recipes; checked against the kind's keys at load)
CONCEPT_KINDS = ("ti", "lora_ti")
#: the overlay ``--rehearsal`` applies on top of any suite (README "Before a long sd15 run")
REHEARSAL_OVERLAY = Path(__file__).resolve().parent.parent / "suites" / "overlays" / "rehearsal.toml"


class SuiteError(ValueError):
    """A suite spec is missing or invalid (the message says what was expected and how to fix it)."""


def parse_method_entry(entry: str) -> tuple[str, dict[str, Any]]:
    """``"diff_ii(split_ratio=0.1)"`` -> ``("diff_ii", {"split_ratio": 0.1})``; a plain id has no parameters.

    The parentheses hold the body of a TOML inline table (``key = value`` pairs, commas between), so values
    are TOML: ``0.1``, ``"slerp"``, ``true``. The parameters apply to the first part of a composition
    (the offline method): ``diff_ii(split_ratio=1.0)+cutmix``.
    """
    text = str(entry).strip()
    if "(" not in text and ")" not in text:
        return _checked_method_id(entry, text), {}
    head, sep, rest = text.partition("(")
    body, close, tail = rest.rpartition(")")
    example = "e.g. diff_ii(split_ratio=0.1) or diff_ii.cl_only(interpolation=\"slerp\")"
    if not head.strip() or not close or (tail and not tail.startswith("+")) or "+" in head:
        raise SuiteError(f"method entry {entry!r}: expected id(key=value, ...) with TOML values after the "
                         f"offline method's id, {example}")
    try:
        params = tomllib.loads(f"p = {{{body}}}")["p"] if body.strip() else {}
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"method entry {entry!r}: the parameters are not key = value pairs with TOML values "
                         f"({exc}); {example}") from exc
    return _checked_method_id(entry, head.strip() + tail), params


def _checked_method_id(entry: str, method_id: str) -> str:
    """``method_id`` read by the one id parser (``augbench.method_ids``); a malformed one is a SuiteError."""
    try:
        parse_method_id(method_id)
    except MethodIdError as exc:
        raise SuiteError(f"method entry {entry!r}: {exc}") from None
    return method_id


@dataclass(frozen=True)
class Suite:
    """A suite with its profile overlay applied (field names are the TOML keys of ``[suite]``).

    ``methods_params[family]`` overrides a method's config (``preset`` selects a preset);
    ``training`` holds suite-wide defaults for how synthetic images join training (keys of
    :data:`TRAINING_KEYS`) and, under a family name, that family's overrides — both on top of the
    defaults the method's card declares (METHODS_SPEC §4).
    """

    name: str
    protocol: str
    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    # reference rows run like methods but are not augmentation methods (the embedded world's ceiling,
    # ``world_renders``: what a perfect generator gives); the caption marks them
    references: tuple[str, ...] = ()
    description: str = ""
    table: str = ""
    test_dataset: str | None = None
    shots: tuple[int, ...] = (5,)
    imbalance_factors: tuple[float, ...] = (100, 20, 10)
    recipe: str = "embedded"
    epochs: int | None = None
    # training images per run (the recipe's ``image_budget``: epochs = budget / epoch length); None =
    # the recipe's own (embedded: 6000)
    image_budget: int | None = None
    # DESIGN.md "Protocols and evaluation": the last epoch of the fixed schedule unless a suite says
    # otherwise (carving a validation split out of 5 shots measured 13 points lower, docs/protocols.md)
    selection: str = "last_epoch"
    val_fraction: float = 0.2
    methods_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    published: tuple[str, ...] = ()
    class_group_thresholds: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    allow_foreign_artifacts: bool = False
    # per synthetic set (issue 25): a classifier trained on it alone, tested on the real test split (the
    # classification accuracy score; one more training per set, shared by rows with the same set), and its
    # FD / KID / precision-recall-density-coverage / Vendi against the training part and the test split
    syn_only: bool = False
    distribution_metrics: bool = False
    # [suite] keys of a plugin protocol that are not fields here (its own parameters, as written)
    protocol_params: Mapping[str, Any] = field(default_factory=dict)
    # scale knobs (a rehearsal shrinks a run with these; None = all / the recipe's / the method's):
    # the first N classes of every dataset, at most N test images per class (the first in split order),
    # at most N synthetic images per cell (the method plans fewer where its own count is lower), the
    # classifier's batch size
    classes: int | None = None
    test_per_class: int | None = None
    max_synthetic: int | None = None
    classifier_batch_size: int | None = None
    # [profile] (PROFILE_KEYS) and [concepts.<kind>] (recipe keys) refine the run's profile
    profile_overrides: Mapping[str, Any] = field(default_factory=dict)
    concepts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # a shrunk run of the real code path (--rehearsal): captions say so, published tables are not shown
    rehearsal: bool = False
    profile: str = "embedded"
    path: str = ""

    @property
    def table_kind(self) -> str:
        return self.table or self.protocol

    def protocol_object(self) -> Protocol:
        """The suite's protocol with its parameters: the fields here it takes (``shots``, ``val_fraction``,
        ...) and ``protocol_params``; validated (METHODS_SPEC §5.5, §6).

        Raises:
            augbench.plugins.RegistryError: unknown protocol, or its plugin does not import.
            ProtocolError: a bad parameter value.
        """
        cls = get_protocol(self.protocol)
        values = {name: getattr(self, name) for name in cls.parameters() if name in _SUITE_FIELDS}
        return cls.from_values({**values, **self.protocol_params})

    @property
    def rows(self) -> tuple[str, ...]:
        """Every row of the table, in order: the methods, then the reference rows."""
        return (*self.methods, *self.references)

    def family_params(self, family: str) -> dict[str, Any]:
        return dict(self.methods_params.get(family, {}))

    def training_overrides(self, family: str) -> dict[str, Any]:
        """Suite-wide ``[training]`` values, then ``[training.<family>]`` on top (the keys of :data:`TRAINING_KEYS`)."""
        base = {k: v for k, v in self.training.items() if k in TRAINING_KEYS}
        return {**base, **{k: v for k, v in dict(self.training.get(family, {})).items() if k in TRAINING_KEYS}}

    def class_weighting(self, family: str) -> dict[str, Any]:
        """The loss re-weighting keys (:data:`WEIGHTING_KEYS`): suite-wide ``[training]``, then ``[training.<family>]``."""
        base = {k: v for k, v in self.training.items() if k in WEIGHTING_KEYS}
        own = {k: v for k, v in dict(self.training.get(family, {})).items() if k in WEIGHTING_KEYS}
        return {**base, **own}

    def to_dict(self) -> dict[str, Any]:
        return json_ready(dataclasses.asdict(self))

    def apply_to_profile(self, profile: Any) -> Any:
        """``profile`` with the suite's ``[profile]`` fields and ``[concepts.<kind>]`` recipe keys applied
        (the latter through ``profile.extra["concept_recipes"]``, which ``concept_recipe`` reads).

        The refinement joins the profile's ``models_fingerprint``, which every cache key that names the
        pipeline or CLIP hashes (``Profile.pipeline_key``): an inversion pool or synthetic set made at a
        rehearsal's 128 px is never reused at 512 px.
        """
        if not self.profile_overrides and not self.concepts:
            return profile
        from augbench.run.hashing import content_hash
        extra = dict(profile.extra)
        if self.concepts:
            recipes = {k: dict(v) for k, v in extra.get("concept_recipes", {}).items()}
            for kind, keys in self.concepts.items():
                recipes[kind] = {**recipes.get(kind, {}), **keys}
            extra["concept_recipes"] = recipes
        refined = content_hash(self.profile_key)[:12]
        fingerprint = f"{profile.models_fingerprint}~{refined}" if profile.models_fingerprint else f"~{refined}"
        return dataclasses.replace(profile, **dict(self.profile_overrides), extra=extra, models_fingerprint=fingerprint)

    @property
    def profile_key(self) -> dict[str, Any] | None:
        """What the suite changed of its profile, for stage keys (``None``: nothing, so keys stay as before)."""
        if not self.profile_overrides and not self.concepts:
            return None
        return json_ready({"profile": dict(self.profile_overrides), "concepts": dict(self.concepts)})


def json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


_SUITE_FIELDS = {f.name for f in dataclasses.fields(Suite)} - {"profile", "path", "protocol_params",
                                                               "profile_overrides", "concepts"}
_TOP_LEVEL = ("suite", "methods_params", "training", "profile", "concepts", "profiles")
# whole numbers >= 1 when given
_COUNT_KEYS = ("epochs", "image_budget", "classes", "test_per_class", "max_synthetic", "classifier_batch_size")


def list_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def suite_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise SuiteError(f"unknown suite {str(name_or_path)!r}{did_you_mean(str(name_or_path), list_suites())}; "
                         f"built-in suites: {', '.join(list_suites())} (or pass the path of a suite TOML file)")
    return path


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: not valid TOML: {exc}") from exc


def _resolved_tables(raw: Mapping[str, Any], profile: str) -> dict[str, dict[str, Any]]:
    """A suite file's tables with its ``[profiles.<profile>]`` overlay applied, key by key."""
    overlay = dict(raw.get("profiles", {}).get(profile, {}))
    return {
        "methods_params": _merge_tables(raw.get("methods_params", {}), overlay.pop("methods_params", {})),
        "training": _merge_training(raw.get("training", {}), overlay.pop("training", {})),
        "profile": {**raw.get("profile", {}), **overlay.pop("profile", {})},
        "concepts": _merge_tables(raw.get("concepts", {}), overlay.pop("concepts", {})),
        "suite": {**raw.get("suite", {}), **overlay},
    }


def _layered(base: dict[str, dict[str, Any]], top: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``top``'s resolved tables (a rehearsal overlay) over ``base``'s, key by key."""
    return {"methods_params": _merge_tables(base["methods_params"], top["methods_params"]),
            "training": _merge_training(base["training"], top["training"]),
            "profile": {**base["profile"], **top["profile"]},
            "concepts": _merge_tables(base["concepts"], top["concepts"]),
            "suite": {**base["suite"], **top["suite"]}}


def load_suite(name_or_path: str | Path, profile: str = "embedded", rehearsal: bool = False) -> Suite:
    """The suite with the profile's overlay applied; unknown keys raise one ``SuiteError``.

    ``rehearsal``: :data:`REHEARSAL_OVERLAY` (its tables and its own ``[profiles.<profile>]``) on top, the
    suite marked as a rehearsal and its ``published`` tables dropped (rehearsal numbers are not results).
    """
    path = suite_path(name_or_path)
    raw = _read_toml(path)
    problems = _unknown(raw, _TOP_LEVEL, "top-level table")
    tables = _resolved_tables(raw, profile)
    if rehearsal:
        over = _read_toml(REHEARSAL_OVERLAY)
        problems += [f"{REHEARSAL_OVERLAY.name}: {p}" for p in _unknown(over, _TOP_LEVEL, "top-level table")]
        top = _resolved_tables(over, profile)
        takes = _protocol_takes(tables["suite"].get("protocol"))
        # the overlay names every built-in protocol's sizes (shots, imbalance factors): each suite takes its own
        top["suite"] = {k: v for k, v in top["suite"].items() if k not in PROTOCOL_FIELDS or k in takes}
        tables = _layered(tables, top)
        tables["suite"].update(rehearsal=True, published=[])
    methods_params, training, values = tables["methods_params"], tables["training"], tables["suite"]
    protocol_params, protocol_problems = _protocol_keys(values)
    problems += protocol_problems + _scale_problems(tables["profile"], tables["concepts"], profile)
    problems += _unknown({k: v for k, v in training.items() if not isinstance(v, Mapping)},
                         (*TRAINING_KEYS, *WEIGHTING_KEYS), "key in [training]")
    for family, table in training.items():
        if isinstance(table, Mapping):
            problems += _unknown(table, (*TRAINING_KEYS, *WEIGHTING_KEYS), f"key in [training.{family}]")
    for key in ("protocol", "datasets", "methods", "seeds"):
        if key not in values:
            problems.append(f"[suite] needs {key!r}")
    rows = [*values.get("methods", []), *values.get("references", [])]
    for entry in rows:
        try:
            parse_method_entry(entry)
        except SuiteError as exc:
            problems.append(str(exc))
    if len(set(rows)) != len(rows):
        problems.append("[suite] methods and references list an entry twice (each entry is one table row)")
    if problems:
        raise SuiteError(f"{path} (profile {profile}): " + "; ".join(problems))
    values.setdefault("name", path.stem)
    for key in ("datasets", "methods", "references", "seeds", "shots", "imbalance_factors", "published"):
        if key in values:
            values[key] = tuple(values[key])
    if isinstance(values.get("class_group_thresholds"), Mapping):
        values["class_group_thresholds"] = {k: tuple(v) if isinstance(v, list) else v
                                            for k, v in values["class_group_thresholds"].items()}
    suite = Suite(**values, methods_params=methods_params, training=training, protocol_params=protocol_params,
                  profile_overrides=tables["profile"], concepts=tables["concepts"], profile=profile, path=str(path))
    try:
        suite.protocol_object()
    except ProtocolError as exc:
        raise SuiteError(f"{path} (profile {profile}): {exc}") from None
    return suite


def _protocol_takes(name: Any) -> tuple[str, ...]:
    try:
        return tuple(get_protocol(name).parameters()) if isinstance(name, str) else ()
    except RegistryError:
        return ()


def _scale_problems(profile_table: Mapping[str, Any], concepts: Mapping[str, Any], profile: str) -> list[str]:
    """Unknown keys of ``[profile]`` and ``[concepts.<kind>]`` (the recipe keys of each kind), and bad values of
    the latter on top of ``profile``'s recipe (where the profile has a built-in one)."""
    from augbench.diffusion.concepts.recipes import RECIPE_KEYS

    problems = _unknown(profile_table, PROFILE_KEYS, "key in [profile]")
    for kind, table in concepts.items():
        if kind not in CONCEPT_KINDS:
            problems.append(f"unknown table [concepts.{kind}]{did_you_mean(kind, CONCEPT_KINDS)}; expected "
                            f"{', '.join(f'[concepts.{k}]' for k in CONCEPT_KINDS)}")
        elif not isinstance(table, Mapping):
            problems.append(f"concepts.{kind} = {table!r}: expected a table of recipe keys")
        else:
            unknown = _unknown({k: v for k, v in table.items() if k != "seed"}, RECIPE_KEYS[kind],
                               f"key in [concepts.{kind}]")
            problems += unknown or _recipe_value_problems(kind, table, profile)
    return problems


def _recipe_value_problems(kind: str, table: Mapping[str, Any], profile: str) -> list[str]:
    """``[concepts.<kind>]`` values the recipe refuses (``micro_batch = -1``), checked at load, not hours later."""
    from augbench.contract import ConfigError
    from augbench.diffusion.concepts.recipes import RECIPES, concept_recipe

    if profile not in RECIPES[kind]:  # a plugin profile: its recipe is known only once the profile is
        return []
    try:
        concept_recipe(kind, profile, **dict(table))
    except ConfigError as exc:
        return [f"[concepts.{kind}]: {exc}"]
    return []


def _protocol_keys(values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Split a plugin protocol's own parameters off ``values`` (the [suite] table) and name every key
    that is neither a suite key nor a parameter of the suite's protocol: ``(protocol_params, problems)``."""
    name, takes, problems = values.get("protocol"), None, []
    if name is not None and not isinstance(name, str):
        problems.append(f"[suite] protocol = {name!r}: expected a protocol name, e.g. \"few_shot\"")
    elif name is not None:
        try:
            takes = get_protocol(name).parameters()
        except RegistryError as exc:  # unknown (with a did-you-mean), or a plugin that does not import
            problems.append(str(exc))
    if takes is not None:
        for key in [k for k in values if k in PROTOCOL_FIELDS and k not in takes]:
            problems.append(f"[suite] {key!r}: protocol {name!r} does not take it{did_you_mean(key, takes)}; its "
                            f"parameters: {', '.join(takes) or '(none)'}")
    takes = takes or ()
    own = {key: values.pop(key) for key in list(values) if key in takes and key not in _SUITE_FIELDS}
    problems += [_unknown_suite_key(key, takes) for key in values if key not in _SUITE_FIELDS]
    return own, problems


def _unknown(table: Mapping[str, Any], known, what: str) -> list[str]:
    return [_misplaced(key, what) or f"unknown {what} {key!r}{did_you_mean(key, sorted(known))}"
            for key in table if key not in known]


def _misplaced(key: str, what: str) -> str | None:
    """``'seeds' belongs in [suite], not in [training]``: a valid key in the wrong table is a placement
    error, not a typo (no did-you-mean naming the key itself)."""
    where = "at the top level" if what == "top-level table" else f"in {what.removeprefix('key in ')}"
    if key in TRAINING_KEYS:
        return f"{key!r} belongs in [training] (all methods) or [training.<family>], not {where}"
    if key in _SUITE_FIELDS:
        return f"{key!r} belongs in [suite], not {where}"
    return None


def _unknown_suite_key(key: str, protocol_params: Sequence[str] = ()) -> str:
    """A [training] key in [suite] (they moved there, per family, in harness v2) is told where it belongs;
    anything else gets the closest suite key or parameter of the suite's protocol, ``protocol_params``."""
    if key in TRAINING_KEYS:
        return _misplaced(key, "[suite]")
    training_hint = did_you_mean(key, TRAINING_KEYS)
    if training_hint:
        return (f"unknown key in [suite] {key!r}: how synthetic images join training is set in [training] "
                f"(all methods) or [training.<family>]{training_hint}")
    return f"unknown key in [suite] {key!r}{did_you_mean(key, sorted({*_SUITE_FIELDS, *protocol_params}))}"


def _merge_tables(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``overlay[family]`` refines ``base[family]`` key by key."""
    return {family: {**base.get(family, {}), **overlay.get(family, {})} for family in {*base, *overlay}}


def _merge_training(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key in {*base, *overlay}:
        b, o = base.get(key), overlay.get(key)
        if isinstance(b, Mapping) or isinstance(o, Mapping):
            merged[key] = {**(b or {}), **(o or {})}
        else:
            merged[key] = o if key in overlay else b
    return merged


def validate_suite(suite: Suite, registry, datasets_dir=None) -> None:
    """Check what the TOML alone cannot: method ids and presets, parameter names, datasets, recipes.

    Every problem is collected and raised as one ``SuiteError`` (with did-you-mean hints), before any
    cell runs.
    """
    from augbench.contract import ConfigError
    from augbench.data.cards import CardError, list_cards
    from augbench.registry import RegistryError

    problems: list[str] = []
    families: set[str] = set()
    for entry in suite.rows:
        try:
            method_id, row_params = parse_method_entry(entry)
            resolved = registry.resolve(method_id)
        except (RegistryError, SuiteError) as exc:
            problems.append(str(exc))
            continue
        families.update(family for family, _, _ in resolved)
        if row_params:  # the row's parameters on top of [methods_params.<family>] of its offline part
            family, preset, cls = resolved[0]
            params = suite.family_params(family)
            suite_preset = params.pop("preset", None)
            try:
                cls.build_config(preset or suite_preset, {**params, **row_params})
            except ConfigError as exc:
                problems.append(f"method entry {entry!r}: {exc}")
    for family, params in suite.methods_params.items():
        if family not in registry:
            problems.append(f"[methods_params.{family}]: unknown method family{did_you_mean(family, registry.names())}")
            continue
        try:
            cls = registry.get_class(family)
            overrides = {k: v for k, v in params.items() if k != "preset"}
            cls.build_config(params.get("preset"), overrides)
        except ConfigError as exc:
            problems.append(f"[methods_params.{family}]: {exc}")
    for family, table in suite.training.items():
        if isinstance(table, Mapping) and family not in registry:
            problems.append(f"[training.{family}]: unknown method family{did_you_mean(family, registry.names())}")
    try:
        known = [card.id for card in list_cards(datasets_dir)]
    except CardError as exc:
        problems.append(str(exc))
        known = []
    for dataset in (*suite.datasets, *([suite.test_dataset] if suite.test_dataset else [])):
        if known and dataset not in known:
            problems.append(f"unknown dataset {dataset!r}{did_you_mean(dataset, known)}; cards: {', '.join(known)}")
    from augbench.training import RECIPES, SELECTION_RULES

    if suite.recipe not in RECIPES:
        problems.append(f"unknown recipe {suite.recipe!r}{did_you_mean(suite.recipe, list(RECIPES))}; "
                        f"expected one of {', '.join(RECIPES)}")
    if suite.selection not in SELECTION_RULES:
        problems.append(f"unknown selection {suite.selection!r}{did_you_mean(suite.selection, SELECTION_RULES)}; "
                        f"expected one of {', '.join(SELECTION_RULES)}")
    from augbench.training.config import class_weighting_problems

    problems += class_weighting_problems(suite)
    for key in _COUNT_KEYS:
        value = getattr(suite, key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            problems.append(f"{key} = {value!r}: expected a whole number >= 1 (or leave it out for the recipe's)")
    if problems:
        raise SuiteError(f"{suite.path} (profile {suite.profile}): " + "; ".join(problems))


__all__ = ["EXECUTORS", "Suite", "SuiteError", "list_suites", "load_suite", "parse_method_entry", "validate_suite"]
