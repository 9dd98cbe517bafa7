"""Contract tests for evaluation protocols, built-in and third-party (timm's "every registered model"
idea: one mixin, run over every registered protocol; DESIGN.md, "Testing").

A test class inherits :class:`ProtocolTesterMixin` and names the protocol; it gets the generic tests:

* parameters validate: the defaults (or ``params``) build, an unknown parameter and every value in
  ``bad_params`` are refused with a :class:`~augbench.protocols.base.ProtocolError`;
* the same seed gives the same manifests, different seeds different ones (unless ``expect_randomness``
  is false: then the same);
* training and validation images are disjoint from the test images;
* class groups (many / medium / few) partition the classes, test groups label every test image;
* the table layout's columns are exactly those its measurements of the protocol's own metrics fill.

It draws from the embedded world's toy datasets (no data download, no pixels decoded), so it is fast
and offline. Example (a third-party package's tests)::

    from augbench.testing.protocols import ProtocolTesterMixin

    class TestFirstShots(ProtocolTesterMixin):
        protocol_name = "first_shots"
        params = {"shots": [2]}

pytest is imported inside the tests that need it, so importing this module needs no test extra.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar

from augbench.data.core import ImageSource
from augbench.protocols import PROTOCOLS
from augbench.protocols.base import Protocol, ProtocolDraw, ProtocolError

__all__ = ["ProtocolTesterMixin", "toy_source"]


@functools.lru_cache(maxsize=8)
def toy_source(dataset: str) -> ImageSource:
    """A dataset of the embedded world (``toybirds``, ``toywaterbirds``), opened once per process."""
    from augbench.data import open_dataset

    return open_dataset(dataset)


class ProtocolTesterMixin:
    """Generic contract tests for one protocol. Subclasses set ``protocol_name``.

    Attributes:
        protocol_name: the registered name under test.
        params: suite parameters to build the protocol with (default: its defaults).
        bad_params: suite parameters each of which must be refused, one at a time.
        dataset: the dataset the cells train on (the suite's ``datasets``).
        test_dataset: the dataset evaluated on, when not ``dataset`` (the suite's ``test_dataset``).
        expect_randomness: whether different seeds must give different training manifests.
        registry: where the protocol is looked up (default: ``augbench.protocols.PROTOCOLS``).
    """

    protocol_name: ClassVar[str] = ""
    params: ClassVar[Mapping[str, Any]] = {}
    bad_params: ClassVar[Mapping[str, Any]] = {}
    dataset: ClassVar[str] = "toybirds"
    test_dataset: ClassVar[str | None] = None
    expect_randomness: ClassVar[bool] = True
    registry: ClassVar[Any] = None

    # -- helpers ------------------------------------------------------------------------------

    def protocol_class(self) -> type[Protocol]:
        return (self.registry or PROTOCOLS).get(self.protocol_name)

    def get_protocol(self) -> Protocol:
        return self.protocol_class().from_values(dict(self.params))

    def sources(self) -> tuple[ImageSource, ImageSource]:
        train = toy_source(self.dataset)
        return train, toy_source(self.test_dataset) if self.test_dataset else train

    def draw(self, seed: int, setting_index: int = 0) -> ProtocolDraw:
        protocol = self.get_protocol()
        train, test = self.sources()
        setting = protocol.settings()[setting_index]
        return protocol.draw(train, seed, dict(setting), test_source=test)

    @staticmethod
    def _hashes(draw: ProtocolDraw) -> tuple[str, str | None, str]:
        return (draw.train.manifest_hash, draw.val.manifest_hash if draw.val else None,
                draw.test.subset.manifest_hash)

    # -- parameters ---------------------------------------------------------------------------

    def test_protocol_is_registered_under_its_name(self):
        cls = self.protocol_class()
        assert cls.name == self.protocol_name and issubclass(cls, Protocol)
        assert self.protocol_name in (self.registry or PROTOCOLS).names()

    def test_parameters_validate(self):
        import pytest

        protocol = self.get_protocol()
        assert set(protocol.parameters()) >= set(self.params)
        assert protocol.with_values() == protocol  # a round trip through from_values
        assert protocol.settings(), "a protocol has at least one cell setting"
        with pytest.raises(ProtocolError, match="does not take 'no_such_parameter'"):
            self.protocol_class().from_values({**self.params, "no_such_parameter": 1})
        for key, value in self.bad_params.items():
            with pytest.raises(ProtocolError):
                self.protocol_class().from_values({**self.params, key: value})

    def test_settings_name_every_cell_parameter(self):
        protocol = self.get_protocol()
        for setting in protocol.settings():
            assert [k for k, _ in setting] == list(protocol.cell_parameters)
            assert protocol.setting(dict(setting), self.sources()[1]) == setting

    # -- subsets ------------------------------------------------------------------------------

    def test_same_seed_gives_the_same_manifests(self):
        assert self._hashes(self.draw(0)) == self._hashes(self.draw(0))

    def test_different_seeds_differ_where_the_protocol_is_random(self):
        first, second = self.draw(0), self.draw(1)
        changed = (first.train.manifest_hash != second.train.manifest_hash
                   or (first.val and first.val.manifest_hash != second.val.manifest_hash))
        assert bool(changed) == self.expect_randomness

    def test_training_and_validation_images_are_not_test_images(self):
        draw = self.draw(0)
        test = {(draw.test.subset.dataset, s.image_id) for s in draw.test.subset.samples}
        assert test, "a protocol evaluates on at least one image"
        for part in (draw.train, draw.val):
            if part is not None:
                assert part.samples and not test & {(part.dataset, s.image_id) for s in part.samples}

    def test_parts_are_named_manifests(self):
        parts = self.draw(0).parts()
        assert "train" in parts and all(subset.samples for subset in parts.values())

    # -- evaluation ---------------------------------------------------------------------------

    def test_class_groups_partition_the_classes(self):
        protocol, (train, _) = self.get_protocol(), self.sources()
        groups = protocol.class_groups(self.draw(0).train, train)
        if groups is None:
            return
        members = [label for labels in groups.values() for label in labels]
        assert sorted(members) == list(range(train.num_classes)), "every class in exactly one group"
        assert tuple(groups) == type(protocol).table_layout.class_group_names

    def test_test_groups_label_every_test_image(self):
        protocol, draw = self.get_protocol(), self.draw(0)
        groups = protocol.test_groups(draw.test.subset.samples)
        if groups is not None:
            assert len(groups) == len(draw.test.subset.samples) and all(isinstance(g, str) for g in groups)

    def test_table_layout_columns_match_the_metrics_it_emits(self):
        import torch

        from augbench.training.evaluation import classification_metrics

        protocol, draw = self.get_protocol(), self.draw(0)
        train_source = self.sources()[0]
        layout = type(protocol).table_layout
        samples = draw.test.subset.samples
        labels = torch.tensor([s.label for s in samples])
        preds = torch.where(torch.arange(len(samples)) % 2 == 0, labels, (labels + 1) % train_source.num_classes)
        metrics = classification_metrics(preds, labels, train_source.num_classes,
                                         groups=protocol.test_groups(samples),
                                         class_groups=protocol.class_groups(draw.train, train_source))
        setting = protocol.settings()[0]
        cell = {"dataset": train_source.card.id, "protocol": protocol.name, "protocol_params": dict(setting),
                "method": "original", "seed": 0}
        assert layout.keeps(metrics)
        measured = {(dataset, setting_) for dataset, setting_, _ in layout.measurements(cell, metrics)}
        extra = {key for key, _ in layout.extra_columns}
        assert set(layout.columns([cell])) == measured - extra and extra <= measured
        assert all(isinstance(layout.label(c), str) and layout.label(c) for c in layout.columns([cell]))
        assert set(layout.class_group_values(metrics)) == set(layout.class_group_names)
