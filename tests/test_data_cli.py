"""``augbench datasets`` and ``augbench data verify | fetch | subset`` (augbench.cli.data) on tiny fixtures.

Includes the determinism check across processes: the manifest hash of a subset drawn in a subprocess
with another ``PYTHONHASHSEED`` equals the one drawn here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_real import make_cub, make_waterbirds, real_classes, small_card, tar_gz

from augbench.cli.data import add_data_commands, main
from augbench.data import Subset, open_dataset
from augbench.protocols.few_shot import few_shot
from augbench.protocols.long_tail import long_tail

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_cub(root)
    make_waterbirds(root)
    return root


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_datasets_lists_cards_and_whether_data_is_present(root, capsys):
    out = run_json(capsys, "datasets", "--json", "--data-root", str(root))
    rows = {r["id"]: r for r in out["datasets"]}
    assert rows["cub"]["present"] and rows["cub"]["location"] == str(root / "CUB_200_2011")
    assert rows["waterbirds"]["present"]
    assert not rows["cars"]["present"] and "no folder 'stanford_cars'" in rows["cars"]["reason"]
    assert rows["cars"]["fetchable"] is False and rows["cub"]["fetchable"] is True
    assert rows["toybirds"]["status"] == "embedded"
    assert main(["datasets", "--data-root", str(root)]) == 0
    assert "cub" in capsys.readouterr().out


def test_subset_prints_total_per_class_counts_and_hash_and_writes_the_manifest(root, tmp_path, capsys):
    out = run_json(capsys, "data", "subset", "cub", "--protocol", "few_shot", "--shots", "2", "--seed", "0",
                   "--json", "--write", str(tmp_path), "--data-root", str(root))
    (info,) = out["subsets"]
    expected = few_shot(open_dataset("cub", root), 2, 0)
    assert info["total"] == 6 and info["classes"] == 3
    assert [r["count"] for r in info["per_class"][:4]] == [2, 2, 2, 0]
    assert info["per_class"][0]["name"] == "001.Black_footed_Albatross"
    assert info["manifest_hash"] == expected.manifest_hash
    path = Path(info["file"])
    assert path == tmp_path / "cub.few_shot.seed0-shots2.json"
    first = path.read_bytes()
    assert Subset.read(path, open_dataset("cub", root)).manifest_hash == expected.manifest_hash
    run_json(capsys, "data", "subset", "cub", "--protocol", "few_shot", "--shots", "2", "--seed", "0",
             "--json", "--write", str(tmp_path), "--data-root", str(root))
    assert path.read_bytes() == first  # byte-identical on a second run

    assert main(["data", "subset", "cub", "--protocol", "few_shot", "--shots", "2", "--seed", "0",
                 "--data-root", str(root)]) == 0
    text = capsys.readouterr().out
    assert f"manifest_hash: {expected.manifest_hash}" in text and "per-class counts" in text
    assert "6 images in 3 classes" in text


def test_subset_long_tail_full_data_and_half_split(root, capsys):
    out = run_json(capsys, "data", "subset", "cub", "--protocol", "long_tail", "--imbalance-factor", "10",
                   "--seed", "0", "--json", "--data-root", str(root))
    assert out["subsets"][0]["manifest_hash"] == long_tail(open_dataset("cub", root), 10, 0).manifest_hash
    assert out["class_groups"]["thresholds"] == {"many_above": 20, "few_below": 5}
    out = run_json(capsys, "data", "subset", "cub", "--protocol", "full_data", "--seed", "1", "--json",
                   "--data-root", str(root))
    assert [(s["part"], s["total"]) for s in out["subsets"]] == [("train", 7), ("val", 2)]
    out = run_json(capsys, "data", "subset", "cub", "--protocol", "half_split", "--split", "train", "--seed", "0",
                   "--json", "--data-root", str(root))
    assert [s["total"] for s in out["subsets"]] == [3, 6]


def test_subset_waterbirds(root, capsys):
    out = run_json(capsys, "data", "subset", "waterbirds", "--protocol", "waterbirds", "--shots", "2", "--seed", "0",
                   "--json", "--data-root", str(root))
    train, test = out["subsets"]
    assert (train["dataset"], train["total"]) == ("cub", 6)
    assert (test["dataset"], test["protocol"], test["total"]) == ("waterbirds", "waterbirds-species", 16)
    assert out["test_groups"] == {"landbird on land": 4, "landbird on water": 4, "waterbird on land": 4,
                                  "waterbird on water": 4}


def test_subset_errors_are_explained(root, capsys):
    assert main(["data", "subset", "cub", "--protocol", "few_shot", "--seed", "0", "--data-root", str(root)]) == 2
    assert "--protocol few_shot needs --shots K" in capsys.readouterr().err
    assert main(["data", "subset", "cub", "--protocol", "few_shot", "--shots", "5", "--seed", "0",
                 "--data-root", str(root)]) == 2
    assert "fewer than 5 images" in capsys.readouterr().err
    assert main(["data", "subset", "cub", "--protocol", "few_shot", "--shots", "1", "--seed", "0",
                 "--data-root", str(root / "missing")]) == 2
    assert "CUB_200_2011/" in capsys.readouterr().err
    assert main(["data", "subset", "cubb", "--protocol", "few_shot", "--shots", "1", "--seed", "0"]) == 2
    assert "unknown dataset 'cubb' (did you mean 'cub'?)" in capsys.readouterr().err


def test_subset_draws_what_a_run_draws(capsys):
    """`data subset` and `augbench run` call the same protocol object: the Waterbirds training subset
    (the few-shot draw of the card's train_dataset) and its test split are the run's (METHODS_SPEC §6.3)."""
    from augbench.run.cells import Cell
    from augbench.run.stages import subset_stage
    from augbench.run.suites import Suite

    out = run_json(capsys, "data", "subset", "toywaterbirds", "--protocol", "waterbirds", "--seed", "2", "--json")
    birds, water = open_dataset("toybirds"), open_dataset("toywaterbirds")
    suite = Suite(name="s", protocol="waterbirds", datasets=("toybirds",), methods=(), seeds=(2,),
                  test_dataset="toywaterbirds", selection="last_epoch")
    run = subset_stage(Cell("s", "embedded", "toybirds", "waterbirds", (("shots", 5),), "original", 2), suite, birds,
                       water)
    train, test = out["subsets"]
    assert (train["dataset"], train["manifest_hash"]) == ("toybirds", run.subset.manifest_hash)
    assert (test["dataset"], test["split"], test["total"]) == ("toywaterbirds", "test", len(run.test.subset.samples))


def test_subset_refuses_an_unknown_protocol_or_a_flag_it_does_not_know(root, capsys):
    assert main(["data", "subset", "cub", "--protocol", "few_shoot", "--shots", "1", "--seed", "0",
                 "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "unknown protocol 'few_shoot' (did you mean 'few_shot'?)" in err and "half_split" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["data", "subset", "cub", "--protocol", "few_shot", "--param", "shots", "--seed", "0",
                 "--data-root", str(root)]) == 2
    assert "--param 'shots': expected NAME=VALUE" in capsys.readouterr().err


def test_manifest_hash_is_independent_of_the_process_and_pythonhashseed(root):
    """Same files -> same manifest byte for byte, whatever PYTHONHASHSEED (and in a fresh process)."""
    src = open_dataset("cub", root)
    expected = {"few_shot": few_shot(src, 2, 3).manifest_hash, "long_tail": long_tail(src, 10, 3).manifest_hash}
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
        for protocol, extra in (("few_shot", ["--shots", "2"]), ("long_tail", ["--imbalance-factor", "10"])):
            proc = subprocess.run(
                [sys.executable, "-m", "augbench.cli.data", "data", "subset", "cub", "--protocol", protocol, *extra,
                 "--seed", "3", "--json", "--data-root", str(root)],
                capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
            )
            assert proc.returncode == 0, proc.stderr
            assert json.loads(proc.stdout)["subsets"][0]["manifest_hash"] == expected[protocol]


def test_verify_command_exit_status(root, tmp_path, capsys):
    assert main(["data", "verify", "cub", "--data-root", str(root)]) == 1
    assert "the card says 5,994" in capsys.readouterr().out
    make_cub(tmp_path / "data", class_names=real_classes("cub")[:3])
    small_card(tmp_path / "cards", "cub", 3, {"train": 9, "test": 6})
    out = run_json(capsys, "data", "verify", "cub", "--json", "--check-images", "--data-root", str(tmp_path / "data"),
                   "--datasets-dir", str(tmp_path / "cards"))
    assert out["ok"] is True


# --- fetch ---------------------------------------------------------------------------------------------


@pytest.fixture()
def cub_archive(tmp_path):
    """A tiny CUB archive (3 classes) and a card whose [[download]] points at it through file:// URLs."""
    names = real_classes("cub")[:3]
    src = make_cub(tmp_path / "src", class_names=names)
    archive = tar_gz(src, tmp_path / "CUB_200_2011.tgz", "CUB_200_2011")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()

    def card(md5_value: str = md5, urls=None):
        urls = urls or [(tmp_path / "does-not-exist.tgz").as_uri(), archive.as_uri()]
        return small_card(tmp_path / "cards", "cub", 3, {"train": 9, "test": 6},
                          downloads=[{"file": "CUB_200_2011.tgz", "urls": urls, "md5": md5_value,
                                      "sha256": "unknown", "dest": ".", "extract": True}])

    return tmp_path, card


def test_fetch_tries_each_mirror_checks_the_hash_and_extracts(cub_archive, capsys):
    tmp_path, card = cub_archive
    card()
    dest = tmp_path / "dest"
    rc = main(["data", "fetch", "cub", "--datasets-dir", str(tmp_path / "cards"), "--data-root", str(dest)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "checksum ok" in out and "result: OK" in out
    assert (dest / "CUB_200_2011" / "images.txt").is_file()
    # a second fetch reuses the verified archive
    assert main(["data", "fetch", "cub", "--datasets-dir", str(tmp_path / "cards"), "--data-root", str(dest)]) == 0
    assert "already downloaded" in capsys.readouterr().out


def test_fetch_rejects_a_wrong_checksum(cub_archive, capsys):
    tmp_path, card = cub_archive
    card(md5_value="0" * 32)
    rc = main(["data", "fetch", "cub", "--datasets-dir", str(tmp_path / "cards"), "--data-root", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert rc == 2 and "checksum mismatch" in err and "does-not-exist.tgz" in err
    assert not (tmp_path / "d" / "CUB_200_2011.tgz").exists()


def test_fetch_without_pinned_checksum_prints_one(cub_archive, capsys):
    tmp_path, card = cub_archive
    card(md5_value="unknown")
    assert main(["data", "fetch", "cub", "--datasets-dir", str(tmp_path / "cards"), "--data-root", str(tmp_path / "d")]) == 0
    assert "no checksum pinned for CUB_200_2011.tgz; got sha256" in capsys.readouterr().out


def test_fetch_dry_run_and_manual_datasets(capsys, tmp_path):
    assert main(["data", "fetch", "flowers", "--dry-run", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "102flowers.tgz" in out and "md5 52808999861908f626f3c1f4e79d11fa" in out and "extract into" in out
    assert not any(tmp_path.iterdir())
    assert main(["data", "fetch", "cars", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "cannot be downloaded automatically" in out and "Manual steps" in out and "cars_meta.mat" in out


def test_commands_plug_into_a_parent_cli(tmp_path):
    parser = argparse.ArgumentParser(prog="augbench")
    parser.add_argument("--data-root")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("methods")
    add_data_commands(sub)
    args = parser.parse_args(["--data-root", str(tmp_path), "datasets", "--json"])
    assert args.data_root == str(tmp_path) and args.func.__name__ == "cmd_datasets"
    args = parser.parse_args(["data", "verify", "cub", "--data-root", "X"])
    assert args.data_root == "X" and args.dataset == "cub"
