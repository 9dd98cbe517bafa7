"""The typed protocol base: what an evaluation protocol owns (METHODS_SPEC §5.4, §5.5, §6; DESIGN.md,
"Protocols and evaluation"; issue 22 item 1).

A protocol is a frozen dataclass whose fields are its suite parameters (``shots``,
``imbalance_factors``, ...), validated when it is built (:meth:`Protocol.from_values`), so a bad suite
fails at load with one line, never in the middle of a run. lm-evaluation-harness' task objects are
the model, typed: one object answers every protocol question the harness asks, for ``augbench run``
and ``augbench data subset`` alike:

* the grid of cells (:meth:`Protocol.settings`) and one cell's setting from loose values
  (:meth:`Protocol.setting`, CLI flags with the card's defaults);
* the subsets (:meth:`Protocol.draw_training`, :meth:`Protocol.draw_test`, :meth:`Protocol.draw`): the
  training subset, the protocol's own validation part where it has one, and the test split;
* the evaluation groups: class groups from training counts (:meth:`Protocol.class_groups`, §5.4) and
  per-sample test groups (:meth:`Protocol.test_groups`, §6.3), which training turns into metrics with
  ``augbench.protocols.metrics``;
* its report table (:class:`TableLayout`): which records count, the columns in the paper's order,
  their labels, the values each record gives them. Columns are keyed ``(dataset, setting)`` exactly as
  the published tables (``reports/published/*.toml``) name theirs, which is the mapping between the two.

Protocols are found by name in ``augbench.protocols.PROTOCOLS`` (entry-point group ``augbench.protocols``).
This module imports no torch and nothing of the run or reporting side.
"""

from __future__ import annotations

import dataclasses
import itertools
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from augbench.plugins import did_you_mean

if TYPE_CHECKING:  # suites import protocols to validate parameters; that path stays PIL- and torch-free
    from augbench.data.core import ImageSource, Sample, Subset

__all__ = ["SUMMARY", "Column", "EvaluationSet", "Protocol", "ProtocolDraw", "ProtocolError", "Setting", "TableLayout",
           "evaluation_key", "setting_key", "setting_number"]

#: A report column: ``(dataset id, setting)``, e.g. ``("cub", "shots=5")`` (as published tables name theirs).
Column = tuple[str, str]
#: One cell's protocol parameters in cell-key order, e.g. ``(("shots", 5),)``; ``()`` for full data.
Setting = tuple[tuple[str, Any], ...]
#: Dataset part of the key of a summary column (Waterbirds' worst group and pooled accuracy).
SUMMARY = "summary"

P = TypeVar("P", bound="Protocol")


class ProtocolError(ValueError):
    """A protocol parameter or setting is invalid (the message says what was expected and how to fix it)."""


def setting_key(params: Mapping[str, Any]) -> str:
    """A cell's column setting: its protocol parameters (``shots=5``) or ``full`` (the published tables' key)."""
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "full"


def setting_number(setting: str) -> float:
    """The number in a setting (``shots=10`` -> 10), for numeric column order; 0 when there is none."""
    digits = "".join(ch for ch in setting if ch.isdigit() or ch == ".")
    try:
        return float(digits)
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class EvaluationSet:
    """The images a cell is evaluated on.

    Attributes:
        subset: the test images, in split order.
        whole_split: they are every image of ``subset.split`` (identified by dataset and split alone);
            false for a drawn test set such as Flower-LT's held-out half.
        facts: what ``augbench data subset`` prints about them (Waterbirds' group sizes).
    """

    subset: Subset
    whole_split: bool = True
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtocolDraw:
    """What a protocol draws for one setting and seed.

    Attributes:
        train: the protocol's training subset (the validation split for model selection is carved from
            it, unless the protocol has its own ``val``).
        val: the protocol's own validation part (full data, §5.5), else ``None``.
        test: the images evaluated on.
        facts: what ``augbench data subset`` prints besides the manifests (class groups, group sizes).
    """

    train: Subset
    val: Subset | None
    test: EvaluationSet
    facts: Mapping[str, Any] = field(default_factory=dict)

    def parts(self) -> dict[str, Subset]:
        """The manifests worth writing: train, the own validation part, and the test set unless it is
        simply the training dataset's whole test split."""
        out = {"train": self.train}
        if self.val is not None:
            out["val"] = self.val
        if not self.test.whole_split or self.test.subset.dataset != self.train.dataset:
            out["test"] = self.test.subset
        return out


def evaluation_key(test: EvaluationSet) -> list[str]:
    """What identifies the test images in a stage key: ``[dataset, split]`` for a whole split (the key
    the harness always used), plus the manifest hash for a drawn test set."""
    ident = [test.subset.dataset, test.subset.split]
    return ident if test.whole_split else [*ident, test.subset.manifest_hash]


class TableLayout:
    """A protocol's report table (P2 Tab.1-3 layouts, METHODS_SPEC §9): the default is P2 Tab.1's,
    columns = dataset × setting, datasets in name order and settings ascending, each the top-1 accuracy.

    Subclasses change what differs: the setting order (long tail: IF 100, 20, 10), fixed columns
    (Waterbirds' groups), summary columns after ``Avg`` and class-group tables.
    """

    #: settings in descending numeric order (long tail prints IF 100 before 10)
    descending: ClassVar[bool] = False
    #: columns after ``Avg``: ``(key, label)``, each the mean ± std over seeds of one record metric
    extra_columns: ClassVar[tuple[tuple[Column, str], ...]] = ()
    #: class groups of the many/medium/few table, in print order; none: no such table
    class_group_names: ClassVar[tuple[str, ...]] = ()
    #: what the table's accuracy columns measure, for the caption
    caption: ClassVar[str] = "Top-1 accuracy (%) on the test split"
    #: each accuracy column is a cell of its own (dataset × setting), so the HTML page draws one training-loss
    #: panel per column; false where the columns are groups of one cell's test set (Waterbirds)
    columns_are_cells: ClassVar[bool] = True

    def keeps(self, metrics: Mapping[str, Any] | None) -> bool:
        """Whether a record with these test ``metrics`` belongs in this table (all by default)."""
        return True

    def columns(self, cells: Sequence[Mapping[str, Any]]) -> list[Column]:
        """The accuracy columns of the records' ``cells`` (``Cell.to_dict``) in the paper's order."""
        found = list(dict.fromkeys((cell["dataset"], self.setting(cell)) for cell in cells))
        sign = -1 if self.descending else 1
        return sorted(found, key=lambda c: (c[0], sign * setting_number(c[1]), c[1]))

    @staticmethod
    def setting(cell: Mapping[str, Any]) -> str:
        """The setting part of a cell's column key (``shots=5``)."""
        return setting_key(cell.get("protocol_params", {}))

    def label(self, column: Column) -> str:
        """The printed label of an accuracy column: ``toybirds (shots=5)``."""
        return f"{column[0]} ({column[1]})"

    def foreign_label(self, cell: Mapping[str, Any]) -> str:
        """How the caption names a cell that used foreign artifacts: its column label."""
        return self.label((cell["dataset"], self.setting(cell)))

    def measurements(self, cell: Mapping[str, Any], metrics: Mapping[str, Any] | None) -> list[tuple[str, str, float]]:
        """``(dataset, setting, value)`` of every table column a record (its cell, its test metrics) fills."""
        if not metrics or metrics.get("top1") is None:
            return []
        return [(cell["dataset"], self.setting(cell), float(metrics["top1"]))]

    def class_group_values(self, metrics: Mapping[str, Any] | None) -> dict[str, float]:
        """A record's class-group accuracies for the many/medium/few table (none by default)."""
        if not self.class_group_names:
            return {}
        values = (metrics or {}).get("class_groups") or {}
        return {g: float(v) for g, v in values.items() if v is not None}


@dataclass(frozen=True)
class Protocol(ABC):
    """An evaluation protocol with validated suite parameters (the dataclass fields).

    Subclasses set :attr:`name` (the registered name, also ``Cell.protocol``), :attr:`cell_parameters`
    and :attr:`table_layout`, implement :meth:`draw_training`, and override :meth:`validate`,
    :meth:`check_setting`, :meth:`draw_test`, :meth:`class_groups` or :meth:`test_groups` where they differ.
    """

    #: the registered name (``few_shot``); a suite's ``protocol`` and a cell's ``protocol``
    name: ClassVar[str] = ""
    #: one line for listings
    summary: ClassVar[str] = ""
    #: per-cell parameter -> the suite parameter listing its values, in cell-key order
    #: (``{"shots": "shots"}``: a suite's ``shots = [5, 10]`` gives cells with ``shots`` 5 and 10)
    cell_parameters: ClassVar[Mapping[str, str]] = {}
    table_layout: ClassVar[TableLayout] = TableLayout()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:  # noqa: B027 - an optional hook: protocols without parameter rules keep it
        """Check the parameters; raise :class:`ProtocolError` naming the bad one and what it should be."""

    # -- parameters ---------------------------------------------------------------------------

    @classmethod
    def parameters(cls) -> tuple[str, ...]:
        """The suite parameters this protocol takes (its dataclass fields)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_values(cls: type[P], values: Mapping[str, Any]) -> P:
        """The protocol with ``values`` (suite keys) over its defaults, validated.

        Raises:
            ProtocolError: a key the protocol does not take (with a did-you-mean), or a bad value.
        """
        known = cls.parameters()
        for key in values:
            if key not in known:
                raise ProtocolError(f"protocol {cls.name!r} does not take {key!r}{did_you_mean(key, known)}; "
                                    f"its parameters: {', '.join(known) or '(none)'}")
        try:
            return cls(**{k: _frozen(v) for k, v in values.items()})
        except TypeError as exc:  # a parameter without a default that the suite does not set
            raise ProtocolError(f"protocol {cls.name!r}: {exc}") from None

    def with_values(self: P, **values: Any) -> P:
        """A copy with some parameters replaced (e.g. ``augbench run --shots``), validated."""
        return type(self).from_values({**{k: getattr(self, k) for k in self.parameters()}, **values})

    # -- cells --------------------------------------------------------------------------------

    def settings(self) -> list[Setting]:
        """The grid of cell settings: every combination of the listed values, in suite order."""
        names = list(self.cell_parameters)
        lists = [getattr(self, self.cell_parameters[n]) for n in names]
        return [tuple(zip(names, combo)) for combo in itertools.product(*lists)]

    def setting(self, values: Mapping[str, Any], source: ImageSource | None = None) -> Setting:
        """One cell's setting from loose values (CLI flags; ``None`` = not given), the card's defaults
        (:meth:`default_setting`) filling the rest.

        Raises:
            ProtocolError: a needed value is missing or invalid.
        """
        given = {k: v for k, v in values.items() if k in self.cell_parameters and v is not None}
        merged = {**self.default_setting(source), **given}
        missing = [k for k in self.cell_parameters if k not in merged]
        if missing:
            raise ProtocolError(f"protocol {self.name!r} needs {', '.join(missing)} for a cell")
        setting = tuple((k, merged[k]) for k in self.cell_parameters)
        self.check_setting(dict(setting))
        return setting

    def default_setting(self, source: ImageSource | None) -> dict[str, Any]:
        """Cell values a dataset card supplies when none is given (none by default)."""
        return {}

    def check_setting(self, setting: Mapping[str, Any]) -> None:  # noqa: B027 - an optional hook
        """Check one cell's values; raise :class:`ProtocolError` when they are invalid."""

    # -- subsets ------------------------------------------------------------------------------

    @abstractmethod
    def draw_training(self, source: ImageSource, seed: int, setting: Mapping[str, Any],
                      split: str | None = None) -> tuple[Subset, Subset | None]:
        """``(training subset, own validation part or None)`` of ``source`` for one cell."""

    def draw_test(self, train_source: ImageSource, test_source: ImageSource, seed: int, setting: Mapping[str, Any],
                  split: str | None = None) -> EvaluationSet:
        """The test images: by default the whole test split of ``test_source`` (card ``[protocols]
        test_split``, else ``test``; METHODS_SPEC §6.1 HARNESS: the official test split)."""
        from augbench.protocols.splits import whole_split

        return EvaluationSet(whole_split(test_source, split))

    def draw(self, source: ImageSource, seed: int, setting: Mapping[str, Any], *,
             test_source: ImageSource | None = None, split: str | None = None,
             test_split: str | None = None) -> ProtocolDraw:
        """Every manifest of one cell: the code ``augbench run`` and ``augbench data subset`` share."""
        train, val = self.draw_training(source, seed, setting, split=split)
        test = self.draw_test(source, test_source or source, seed, setting, split=test_split)
        facts = dict(test.facts)
        groups = self.class_groups(train, source)
        if groups is not None:
            facts["class_groups"] = {"thresholds": self.thresholds_of(source),
                                     "counts": {k: len(v) for k, v in groups.items()}}
        return ProtocolDraw(train, val, test, facts)

    @classmethod
    def training_dataset(cls, test_source: ImageSource) -> str | None:
        """The dataset a cell trains on when ``test_source`` names only the test set (Waterbirds'
        card names CUB); ``None``: the same dataset."""
        return None

    # -- evaluation ---------------------------------------------------------------------------

    def class_groups(self, subset: Subset, source: ImageSource) -> dict[str, list[int]] | None:
        """Named class groups from the training subset's counts (many/medium/few, §5.4), or ``None``."""
        return None

    def thresholds_of(self, source: ImageSource) -> dict[str, int]:
        """The thresholds behind :meth:`class_groups` (for printing); none by default."""
        return {}

    def test_groups(self, samples: Sequence[Sample]) -> list[str] | None:
        """Per test sample, its group key (Waterbirds' ``"{y}{place}"``, §6.3), or ``None`` without groups."""
        return None


def _frozen(value: Any) -> Any:
    """TOML lists as tuples, so a protocol stays hashable and immutable."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _frozen(v) for k, v in value.items()}
    return value
