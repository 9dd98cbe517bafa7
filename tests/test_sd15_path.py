"""Every few_shot method through the sd15 profile's code path on SD1.5-*shaped* models (issue 23).

The models are SD1.5's architecture with reduced widths (``augbench.testing.sd15_shaped``: the same block
types, cross-attention width 768 and CLIP tokenizer), a ViT-B/32-shaped CLIP at 224 px, random timm
ResNet-50 and AlexNet weights, an SD1.5-shaped InstructPix2Pix for DiffuseMix through the profile's weight variables, and a CUB_200_2011-layout fixture
with realistic image sizes. The run is ``augbench run --profile sd15 --rehearsal`` of the suite
``tools/make_random_sd15.py`` writes (few_shot, Diff-II's suffixes from a file), exactly as the README's
"Before a long sd15 run" says, then ``augbench report``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from fixtures_real import make_cub

from augbench.cli.main import main
from augbench.run.suites import load_suite

_TOOL = Path(__file__).resolve().parent.parent / "tools" / "make_random_sd15.py"
_spec = importlib.util.spec_from_file_location("augbench_tools_make_random_sd15", _TOOL)
make_random_sd15 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_random_sd15)


@pytest.fixture(scope="module")
def sd15_shaped(tmp_path_factory):
    """Environment variables pointing the sd15 profile at SD1.5-shaped random models, and a CUB fixture."""
    import timm
    import torch
    import torchvision
    from safetensors.torch import save_file

    from augbench.testing.sd15_shaped import (
        cached_sd15_shaped_instruct_pipeline,
        cached_sd15_shaped_pipeline,
        save_sd15_shaped_clip,
    )

    root = tmp_path_factory.mktemp("sd15_shaped")
    save_file(timm.create_model("resnet50", pretrained=False).state_dict(), str(root / "resnet50.safetensors"))
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), root / "alexnet.pth")
    env = {"AUGBENCH_SD15_PIPELINE": str(cached_sd15_shaped_pipeline()),
           "AUGBENCH_SD15_CLIP": str(save_sd15_shaped_clip(root / "clip", "tiny")),
           "AUGBENCH_SD15_CLASSIFIER_WEIGHTS": str(root / "resnet50.safetensors"),
           "AUGBENCH_SD15_ALEXNET": str(root / "alexnet.pth"),
           "AUGBENCH_SD15_INSTRUCT_PIPELINE": str(cached_sd15_shaped_instruct_pipeline())}
    make_cub(root / "data", n_classes=3, train_per_class=6, test_per_class=4, image_size=(80, 60))
    suite = make_random_sd15.write_rehearsal_suite(root / "few_shot.toml", root / "suffixes.txt")
    return {"env": env, "data": root / "data", "suite": suite}


def test_every_few_shot_method_rehearses_the_sd15_path(sd15_shaped, tmp_path, monkeypatch, capsys):
    for name, value in sd15_shaped["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUGBENCH_NUM_THREADS", "1")
    suite = load_suite(str(sd15_shaped["suite"]), "sd15", rehearsal=True)
    run_dir = tmp_path / "run"
    code = main(["run", "--suite", str(sd15_shaped["suite"]), "--profile", "sd15", "--rehearsal", "--datasets", "cub",
                 "--device", "cpu",
                 "--data-root", str(sd15_shaped["data"]), "--run-dir", str(run_dir), "--cache-dir",
                 str(tmp_path / "cache"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert "peak memory per stage: prepare" in captured.out
    records = {json.loads(p.read_text())["cell"]["method"]: json.loads(p.read_text())
               for p in (run_dir / "records").glob("*.json")}
    assert sorted(records) == sorted(suite.methods)  # every method, one 5-shot cell each
    for method, record in records.items():
        assert record["profile"] == "sd15" and record["subset"]["train_size"] == 15, method  # 3 classes x 5 shots
        assert record["metrics"]["top1"] is not None
        assert record["memory"]["train"]["rss_gb"] > 0.1, method  # peak memory per stage that ran
        synthetic = record["synthetic"]
        if synthetic is None:
            continue
        assert 0 < synthetic["size"] <= 12, method  # max_synthetic
        metrics = synthetic["metrics"]
        assert metrics["lpips"]["metric"] == "lpips_alex", method  # the lpips package, random AlexNet trunk
        assert metrics["clip_score"]["value"] is not None, method
    # generation at the rehearsal's resolution; edits come back at their source's size (80 x 60)
    from PIL import Image

    sd_random = Path(records["sd_random"]["synthetic"]["dir"])
    with Image.open(next(sd_random.glob("**/*.png"))) as im:
        assert im.size == (128, 128)
    edits = Path(records["real_guidance"]["synthetic"]["dir"])
    with Image.open(next(edits.glob("**/*.png"))) as im:
        assert im.size == (80, 60)

    assert main(["report", "--run-dir", str(run_dir), "--format", "md"]) == 0
    report = (run_dir / "reports" / "few_shot.md").read_text()
    assert "REHEARSAL" in report and "no published table" in report
    assert "P2" not in report.split("REHEARSAL")[0]  # no published rows above the caption
    for method in suite.methods:
        assert f"`{method}`" in report or method in report


def test_the_sd15_table_renders_with_its_published_rows(sd15_shaped, tmp_path, monkeypatch):
    """The same records under the real (not rehearsal) suite: our CUB column beside P2 Tab.1's numbers."""
    from record_builders import cell_record

    from augbench.reporting.formats import to_markdown
    from augbench.reporting.published import load_published
    from augbench.reporting.tables import build_table, caption

    full = load_suite(str(sd15_shaped["suite"]), "sd15")
    assert full.published == ("p2_tab1_resnet50",) and not full.rehearsal
    records = [cell_record(m, dataset="cub", profile="sd15", metrics={"top1": 50.0 + i})
               for i, m in enumerate(full.methods)]
    table = build_table(full.table_kind, records, method_order=list(full.methods))
    published = load_published("p2_tab1_resnet50")
    text = to_markdown(table, caption(table, full.to_dict(), "sd15"), [published])
    assert "REHEARSAL" not in text and published.title in text
    ours, paper = text.split(f"**Published: {published.title}")[:2]
    assert "diff_ii" in ours and "64.00" in ours  # our 15th row: 50 + 14
    assert "| Ours (Diff-II)   | diff_ii" in paper  # the paper's row, matched to our method id


def test_a_missing_model_stops_the_run_before_the_first_cell(sd15_shaped, tmp_path, monkeypatch, capsys):
    for name, value in sd15_shaped["env"].items():
        monkeypatch.setenv(name, value)
    empty = tmp_path / "not_a_pipeline"
    empty.mkdir()
    monkeypatch.setenv("AUGBENCH_SD15_PIPELINE", str(empty))
    run_dir = tmp_path / "run"
    code = main(["run", "--suite", str(sd15_shaped["suite"]), "--profile", "sd15", "--rehearsal", "--datasets", "cub",
                 "--device", "cpu", "--data-root", str(sd15_shaped["data"]), "--run-dir", str(run_dir), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "AUGBENCH_SD15_PIPELINE" in err and str(empty) in err
    assert len(err.strip().splitlines()) == 1 and not (run_dir / "records").exists()
