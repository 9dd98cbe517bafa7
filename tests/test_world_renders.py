"""The ceiling reference row: fresh renders by the world's own renderer, with wrong-class presets (issue 24)."""

from __future__ import annotations

import numpy as np
import pytest

from augbench.contract import ConfigError, MethodContext
from augbench.data import open_dataset
from augbench.data.core import Subset
from augbench.data.views import first_classes
from augbench.registry import default_registry
from augbench.run.profiles import get_profile
from augbench.testing.tiny import TinySource, tiny_card


@pytest.fixture(scope="module")
def world():
    source = first_classes(open_dataset("toybirds"), 4)
    train = [s for s in source.samples("train") if s.label < 4]
    by_class = {c: [s for s in train if s.label == c][:5] for c in range(4)}
    subset = Subset.of_source(source, "train", "few_shot", {"shots": 5}, tuple(x for v in by_class.values() for x in v))
    return source, subset


def _generate(method_id, world, seed=0):
    source, subset = world
    method = default_registry().create(method_id)
    ctx = MethodContext(profile=get_profile("embedded"), source=source)
    method.setup(subset, ctx)
    requests = method.plan(subset, None, seed, ctx=ctx)
    return requests, method.generate(requests, ctx)


def test_fresh_renders_of_the_requested_class_none_of_them_a_split_image(world):
    source, subset = world
    requests, samples = _generate("world_renders", world)
    assert len(samples) == len(subset.samples) == 20
    assert [int(np.argmax(s.label)) for s in samples] == [r.target_class for r in requests]
    assert all(s.provenance["rendered_class"] == r.target_class and not s.provenance["wrong_class"]
               for s, r in zip(samples, requests))
    train = {np.asarray(source.load_image(x.image_id)).tobytes() for x in source.samples("train")}
    assert all(s.image_array().shape == (64, 64, 3) for s in samples)
    assert not any(s.image_array().tobytes() in train for s in samples)
    again = _generate("world_renders", world)[1]
    assert all(np.array_equal(a.image_array(), b.image_array()) for a, b in zip(samples, again))  # seeded


def test_wrong_presets_render_that_share_from_other_classes_and_are_paired(world):
    _, low = _generate("world_renders.wrong10", world)
    _, high = _generate("world_renders.wrong50", world)
    wrong_low = {i for i, s in enumerate(low) if s.provenance["wrong_class"]}
    wrong_high = {i for i, s in enumerate(high) if s.provenance["wrong_class"]}
    assert wrong_low <= wrong_high and 4 <= len(wrong_high) <= 16  # 50 % of 20, binomial spread
    for s in high:
        target = int(np.argmax(s.label))
        assert (s.provenance["rendered_class"] != target) == s.provenance["wrong_class"]  # labelled as requested
    method = default_registry().create("world_renders", {"wrong": 1.0})
    rng = np.random.default_rng(0)
    assert all(method.rendered_class(2, 4, rng)[0] != 2 for _ in range(50))


def test_a_dataset_that_is_not_a_world_card_is_refused_naming_it_and_the_profile():
    method = default_registry().create("world_renders")
    source = TinySource(tiny_card(3))
    ctx = MethodContext(profile=get_profile("sd15", environ={}), source=source)
    with pytest.raises(ConfigError, match="dataset 'tiny' \\(profile 'sd15'\\) is not a world card"):
        method.setup(None, ctx)
    with pytest.raises(ValueError, match="wrong = 1.5"):
        default_registry().create("world_renders", {"wrong": 1.5})


def test_the_suites_show_it_as_a_marked_reference_row():
    from record_builders import cell_record

    from augbench.reporting.tables import build_table, caption
    from augbench.run.suites import load_suite

    for name in ("few_shot", "long_tail", "waterbirds"):
        assert load_suite(name).references == ("world_renders",) and load_suite(name, "sd15").references == ()
    suite = load_suite("few_shot")
    records = [cell_record(m, metrics={"top1": 50.0}) for m in ("original", "world_renders")]
    table = build_table(suite.table_kind, records, method_order=list(suite.rows))
    assert list(table.methods) == ["original", "world_renders"]
    assert "Reference rows, not augmentation methods: `world_renders`" in caption(table, suite.to_dict(), "embedded")


def test_fidelity_gain_picture_places_methods_against_the_reference_curve(tmp_path):
    from record_builders import cell_record, synthetic_set, write_records

    from augbench.reporting.fidelity_gain import gain_points
    from augbench.reporting.run_report import render_suite_report
    from augbench.reporting.tables import build_table
    from augbench.run.records import write_run_suite
    from augbench.run.suites import load_suite

    # (method, fidelity, accuracy gain per seed) over three seeds; original at 70 + seed
    rows = {"sd_random": (40.0, (-5.0, -7.0, -6.0)), "world_renders": (99.0, (12.0, 14.0, 13.0)),
            "world_renders.wrong30": (70.0, (1.0, 0.0, 2.0))}
    records = []
    for seed in range(3):
        for shots in (5, 10):
            records.append(cell_record("original", seed, params={"shots": shots}, metrics={"top1": 70.0 + seed}))
            for method, (fid, gains) in rows.items():
                records.append(cell_record(method, seed, params={"shots": shots}, metrics={"top1": 70.0 + seed + gains[seed]},
                                           synthetic=synthetic_set(30.0, 60.0, fid)))
    references = ("world_renders", "world_renders.wrong30")
    table = build_table("few_shot", records, method_order=["original", *rows])
    points = {p.method: p for p in gain_points(table, references)}
    assert set(points) == set(rows)
    assert points["world_renders"].reference and not points["sd_random"].reference
    assert points["sd_random"].gain == pytest.approx(-6.0) and points["sd_random"].fidelity == 40.0
    assert points["world_renders"].low < 13.0 < points["world_renders"].high  # paired interval over 3 seeds

    suite = load_suite("ceiling")
    write_run_suite(tmp_path, suite)
    write_records(tmp_path, records)
    paths = render_suite_report(run_dir=tmp_path, formats=["md", "html"], echo=None)
    png = tmp_path / "reports" / "ceiling_fidelity_gain.png"
    assert png in paths and png.stat().st_size > 1000
    assert "oracle fidelity" in (tmp_path / "reports" / "ceiling.html").read_text()
