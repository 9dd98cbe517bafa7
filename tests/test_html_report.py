"""The HTML report: one self-contained page with the table, plots and sample grids from a run directory."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image
from record_builders import cell_record, synthetic_set, write_records
from report_parsing import html_tables

from augbench.reporting import html as html_report
from augbench.reporting.run_report import render_suite_report

CLASSES = ["Red Finch", "Blue Gull", "Green Tern"]


def _write_synthetic_set(directory, per_class=2, size=16):
    (directory / "images").mkdir(parents=True)
    rows = []
    for c, name in enumerate(CLASSES):
        for j in range(per_class):
            file = f"images/{c:02d}_{j}.png"
            Image.new("RGB", (size, size), (40 * c, 80, 20 * j)).save(directory / file)
            label = {name: 1.0} if j == 0 else {name: 0.7, CLASSES[(c + 1) % 3]: 0.3}
            rows.append({"file": file, "label": label, "target_class": name, "sources": [], "seed": j})
    (directory / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _record(method, seed, top1, shots=5, synthetic=None, losses=(2.0, 1.0)):
    return cell_record(method, seed, params={"shots": shots}, metrics={"top1": top1}, synthetic=synthetic,
                       history=[{"epoch": i + 1, "train_loss": v} for i, v in enumerate(losses)])


def _run_dir(tmp_path, with_set=True):
    run_dir = tmp_path / "run"
    (run_dir / "records").mkdir(parents=True)
    if with_set:
        _write_synthetic_set(run_dir / "cache" / "synthetic" / "abc123")
    # "dir" as recorded by a run started elsewhere: the page must find the set by its key
    syn = synthetic_set(30.0, 60.0, key="abc123", lpips_metric="lpips_effnet_uncalibrated")
    assert syn["dir"] != str(run_dir / "cache" / "synthetic" / "abc123")
    write_records(run_dir, [_record("original", 0, 50.0), _record("original", 1, 54.0),
                            _record("sd_random", 0, 58.0, synthetic=syn),
                            _record("sd_random+mixup", 0, 57.0, synthetic=syn)])
    return run_dir


def _images(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(b)))
            for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]


def test_html_page_has_table_plots_and_one_grid_per_synthetic_set(tmp_path):
    pytest.importorskip("matplotlib")
    run_dir = _run_dir(tmp_path)
    [path] = render_suite_report("few_shot", run_dir=run_dir, formats=("html",), echo=None)
    page = path.read_text(encoding="utf-8")
    assert path.name == "few_shot.html"
    [results] = html_tables(page)
    assert results == [["Method", "toybirds (shots=5)", "Avg [Δ]", "LPIPS", "CLIP"],
                       ["original", "52.00 ± 2.83", "52.00", "—", "—"],  # mean ± sample std over the two seeds
                       ["sd_random", "58.00", "58.00 [+6.00]", "30.0", "60.0"],
                       ["sd_random+mixup", "57.00", "57.00 [+5.00]", "30.0", "60.0"]]
    assert "<caption>Few-shot classification: k images per class" in page and "seeds [0, 1]" in page
    # accuracy plot, loss plot, and a single grid shared by the two methods that use the set
    images = _images(page)
    assert len(images) == 3
    assert "sd_random, sd_random+mixup — toybirds (shots=5)" in page
    grid = images[2]
    # 3 classes × at most 6 images, tiles at the images' own 16 px (never scaled up), labels to the left
    assert grid.size == (220 + 6 * 16, 3 * 16)


def test_html_page_without_matplotlib_or_synthetic_images_still_renders(tmp_path, monkeypatch):
    monkeypatch.setattr(html_report, "_pyplot", lambda: None)
    run_dir = _run_dir(tmp_path, with_set=False)
    [path] = render_suite_report("few_shot", run_dir=run_dir, formats=("html",), echo=None)
    page = path.read_text(encoding="utf-8")
    assert "pip install 'augbench[report]'" in page
    assert "synthetic set not found" in page and "cache cleared" in page
    assert _images(page) == []


def test_mixed_labels_are_written_on_the_tiles():
    assert html_report._label_text({"a": 0.3, "b": 0.7}) == "b 0.70 / a 0.30"
    assert html_report._label_text({"a": 1.0}) == "a"
    assert html_report._label_text({"a": 1.0, "b": 0.0}) == "a"


def test_unknown_report_format_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="md, tex, csv, html"):
        render_suite_report("few_shot", run_dir=_run_dir(tmp_path, with_set=False), formats=("pdf",), echo=None)


def test_editing_methods_show_each_source_then_its_edits(tmp_path):
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    rows = []
    for s, source in enumerate(["real_a", "real_b"]):
        for k in range(3):
            file = f"images/{s}{k}.png"
            Image.new("RGB", (16, 16), (0, 100 * s, 60 * k)).save(folder / file)
            rows.append({"file": file, "label": {"Red Finch": 1.0}, "target_class": "Red Finch", "sources": [source],
                         "provenance": {"strength": 0.25 * (k + 1)}})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    sources = {"real_a": Image.new("RGB", (40, 40), (255, 0, 0)), "real_b": Image.new("RGB", (40, 40), (0, 0, 255))}
    grid = html_report.edit_grid(folder, sources.__getitem__, edits=5)
    assert grid.size == (6 * 16 + 8, 2 * 16)  # a row per source: the source, a divider, then its edits
    assert grid.getpixel((2, 2)) == (255, 0, 0) and grid.getpixel((2, 18)) == (0, 0, 255)
    assert grid.getpixel((8 + 16 + 15, 15)) == (0, 0, 0) and grid.getpixel((8 + 3 * 16 + 15, 31)) == (0, 100, 120)
    _write_synthetic_set(tmp_path / "t2i")
    assert html_report.edit_grid(tmp_path / "t2i", sources.__getitem__) is None  # text-to-image: no sources
