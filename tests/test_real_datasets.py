"""Readers of the official dataset layouts, on tiny fixtures in each layout (METHODS_SPEC §8.3).

Checked: class order and splits load; broken layouts fail with helpful messages (a missing root shows
the expected tree; a missing file is named; a corrupt image is named); ``verify`` fails on counts that
disagree with the card and passes with a card that matches; Waterbirds group counts and metrics.
"""

from __future__ import annotations

import logging
import shutil

import pytest
from fixtures_real import (
    corrupt,
    make_aircraft,
    make_cars,
    make_cub,
    make_flowers,
    make_pets,
    make_waterbirds,
    real_classes,
    small_card,
    write_jpeg,
)

from augbench.data import DataError, open_dataset
from augbench.data.cards import load_card
from augbench.data.readers.birds import CUBSource, WaterbirdsSource
from augbench.data.verify import verify_dataset
from augbench.protocols.few_shot import few_shot
from augbench.protocols.waterbirds import waterbirds, waterbirds_metrics


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One data root holding every dataset in its official layout (read-only for the tests)."""
    root = tmp_path_factory.mktemp("data")
    make_cub(root)
    make_waterbirds(root)
    make_aircraft(root)
    make_pets(root)
    make_flowers(root)
    make_cars(root)
    return root


# --- cards -------------------------------------------------------------------------------------------


def test_cards_have_official_class_lists_and_layouts():
    expected = {"cub": 200, "aircraft": 100, "cars": 196, "pets": 37, "flowers": 102, "waterbirds": 200}
    for dataset_id, n in expected.items():
        card = load_card(dataset_id)
        assert card.num_classes == n and len(set(card.class_names)) == n
        assert card.layout["tree"].strip() and card.layout["obtain"].strip() and card.licence and card.citation
        assert card.raw["classes"]["source"]
    cub = load_card("cub")
    assert cub.class_names[0] == "001.Black_footed_Albatross" and cub.class_names[-1] == "200.Common_Yellowthroat"
    assert all(name.startswith(f"{i:03d}.") for i, name in enumerate(cub.class_names, 1))
    assert cub.prompt(0) == "a photo of a Black footed Albatross bird"
    assert load_card("waterbirds").class_names == cub.class_names
    flowers = load_card("flowers").class_names
    assert flowers[87] == "cyclamen " and flowers[90] == "hippeastrum "
    aircraft = load_card("aircraft")
    assert aircraft.prompt_name(aircraft.class_names.index("F-16A/B")) == "F-16A B"
    assert aircraft.prompt_name(aircraft.class_names.index("F/A-18")) == "F A-18"
    assert load_card("cars").class_names[0] == "AM General Hummer SUV 2000"
    assert load_card("pets").class_names[:3] == ("Abyssinian", "american_bulldog", "american_pit_bull_terrier")
    # the download sources pin the checksums torchvision / WILDS-adjacent code publish
    assert load_card("cub").downloads[0]["md5"] == "97eceeb196236b17998738112f37df78"
    assert {d["file"]: d["md5"] for d in load_card("flowers").downloads}["setid.mat"] == "a5357ecc9cb78c4bef273ce3793fc85c"
    assert not load_card("cars").downloads


def test_strip_numeric_prefix_only_where_asked():
    assert load_card("cub").prompt_name(140) == "Artic Tern"  # official spelling kept
    toy = load_card("toybirds")
    assert not toy.strip_numeric_prefix and toy.prompt_name(0) == "Orange-crowned Gull"


# --- CUB ---------------------------------------------------------------------------------------------


def test_cub_class_order_and_splits(root):
    src = open_dataset("cub", root)
    assert isinstance(src, CUBSource) and src.split_names() == ["train", "test"]
    train, test = src.samples("train"), src.samples("test")
    assert (len(train), len(test)) == (9, 6)
    assert [s.label for s in train] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert train[0].image_id.startswith("001.Black_footed_Albatross/") and train[0].attrs["cub_id"] == 1
    assert "classes.txt (200 classes)" in src.class_check
    assert src.load_image(test[0].image_id).mode == "RGB"
    # data root may also be the dataset folder itself, or come from $AUGBENCH_DATA
    assert open_dataset("cub", root / "CUB_200_2011").samples("train") == train


def test_data_root_from_environment(root, monkeypatch):
    monkeypatch.setenv("AUGBENCH_DATA", str(root))
    assert len(open_dataset("cub").samples("test")) == 6


def test_cub_class_order_mismatch_fails(tmp_path):
    names = real_classes("cub")
    names[0], names[1] = names[1], names[0]
    make_cub(tmp_path, class_names=names)
    with pytest.raises(DataError, match=r"class order check failed.*index 0: file has '002.Laysan_Albatross'"):
        open_dataset("cub", tmp_path)


def test_missing_root_shows_tree_and_how_to_obtain(tmp_path):
    with pytest.raises(DataError) as info:
        open_dataset("cub", None)
    assert "--data-root" in str(info.value) and "AUGBENCH_DATA" in str(info.value)
    with pytest.raises(DataError) as info:
        open_dataset("cub", tmp_path)
    msg = str(info.value)
    assert "no folder 'CUB_200_2011'" in msg
    assert "└── CUB_200_2011/" in msg and "image_class_labels.txt" in msg
    assert "augbench data fetch cub" in msg
    with pytest.raises(DataError, match="does not exist"):
        open_dataset("cars", tmp_path / "nowhere")


def test_missing_file_is_named(tmp_path):
    folder = make_cub(tmp_path)
    (folder / "train_test_split.txt").unlink()
    with pytest.raises(DataError) as info:
        open_dataset("cub", tmp_path)
    assert f"missing: {folder / 'train_test_split.txt'}" in str(info.value)
    assert "Expected layout" in str(info.value)


def test_inconsistent_lists_are_named(tmp_path):
    folder = make_cub(tmp_path)
    lines = (folder / "image_class_labels.txt").read_text().splitlines()
    (folder / "image_class_labels.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match=r"image_class_labels.txt does not match images.txt: 1 image id\(s\) missing"):
        open_dataset("cub", tmp_path)


def test_corrupt_image_is_named(tmp_path):
    make_cub(tmp_path)
    src = open_dataset("cub", tmp_path)
    sample = src.samples("train")[1]
    bad = corrupt(src.image_path(sample.image_id))
    with pytest.raises(DataError, match="corrupt or unreadable image") as info:
        src.load_image(sample.image_id)
    assert str(bad) in str(info.value)
    report = verify_dataset(load_card("cub"), tmp_path, check_images=True)
    failure = [c for c in report.failures if "cannot be decoded" in c.what]
    assert failure and str(bad) in failure[0].detail


def test_verify_fails_on_counts_with_the_real_card(root):
    report = verify_dataset(load_card("cub"), root)
    assert not report.ok
    whats = [c.what for c in report.failures]
    assert "split 'train': 9 images, the card says 5,994" in whats
    assert "split 'test': 6 images, the card says 5,794" in whats
    assert any(c.status == "ok" and "classes.txt" in c.what for c in report.checks)
    assert "result: FAILED" in report.format()


def test_verify_passes_with_a_matching_card_and_names_missing_and_extra_files(tmp_path):
    names = real_classes("cub")[:3]
    make_cub(tmp_path / "data", class_names=names)
    small_card(tmp_path / "cards", "cub", 3, {"train": 9, "test": 6})
    card = load_card("cub", tmp_path / "cards")
    report = verify_dataset(card, tmp_path / "data", check_images=True)
    assert report.ok, report.format()
    src = open_dataset(card, tmp_path / "data")
    gone = src.image_path(src.samples("test")[0].image_id)
    gone.unlink()
    stray = write_jpeg(tmp_path / "data" / "CUB_200_2011" / "images" / names[0] / "stray.jpg", 1)
    report = verify_dataset(card, tmp_path / "data")
    assert not report.ok
    missing = [c for c in report.checks if "listed image file(s) missing" in c.what]
    assert missing and str(gone) in missing[0].detail
    extra = [c for c in report.checks if c.status == "warn"]
    assert extra and str(stray) in extra[0].detail


# --- torchvision-backed readers ------------------------------------------------------------------------


def test_aircraft_reads_variants_and_splits(root):
    src = open_dataset("aircraft", root)
    assert src.split_names() == ["train", "val", "trainval", "test"]
    assert [len(src.samples(s)) for s in src.split_names()] == [6, 3, 9, 6]
    assert [s.label for s in src.samples("train")] == [0, 1, 2, 0, 1, 2]
    assert src.samples("trainval") == src.samples("train") + src.samples("val")
    assert src.samples("test")[0].image_id.isdigit() and len(src.samples("test")[0].image_id) == 7
    assert "data/variants.txt (100 classes)" in src.class_check


def test_aircraft_variant_order_is_checked(tmp_path):
    names = real_classes("aircraft")
    names[5], names[6] = names[6], names[5]
    make_aircraft(tmp_path, class_names=names)
    with pytest.raises(DataError, match="data/variants.txt.*index 5"):
        open_dataset("aircraft", tmp_path)


def test_pets_reads_annotations(root):
    src = open_dataset("pets", root)
    assert src.split_names() == ["trainval", "test"]
    assert [s.image_id for s in src.samples("trainval")[:4]] == ["Abyssinian_1", "Abyssinian_2", "Abyssinian_3", "american_bulldog_1"]
    assert [s.label for s in src.samples("test")] == [0, 0, 1, 1, 2, 2]


def test_pets_breed_order_is_checked(tmp_path):
    names = real_classes("pets")
    names[0], names[1] = names[1], names[0]
    make_pets(tmp_path, class_names=names)
    with pytest.raises(DataError, match=r"class id 1: images of 'american_bulldog', card 'Abyssinian'"):
        open_dataset("pets", tmp_path)


def test_flowers_reads_mat_files(root):
    src = open_dataset("flowers", root)
    assert src.split_names() == ["train", "val", "test", "trainval", "all"]
    assert [len(src.samples(s)) for s in src.split_names()] == [6, 6, 6, 12, 18]
    assert [s.image_id for s in src.samples("all")[:4]] == ["image_00001", "image_00002", "image_00003", "image_00004"]
    assert [s.label for s in src.samples("all")[:4]] == [0, 1, 2, 0]
    assert {s.label for s in src.samples("train")} == {0, 1, 2}
    assert "no official class-name file" in src.class_check


def test_flowers_verify_checks_the_pinned_md5s(root):
    report = verify_dataset(load_card("flowers"), root)
    mat = [c for c in report.failures if "checksum of" in c.what]
    assert {c.what.split("/")[-1].split(" ")[0] for c in mat} == {"imagelabels.mat", "setid.mat"}
    assert "e0620be6f572b9609742df49c70aed4d" in " ".join(c.detail for c in mat)


def test_cars_reads_annotations_and_meta(root):
    src = open_dataset("cars", root)
    assert src.split_names() == ["train", "test"]
    train = src.samples("train")
    assert [s.image_id for s in train[:3]] == ["cars_train/00001.jpg", "cars_train/00002.jpg", "cars_train/00003.jpg"]
    assert [s.label for s in train] == [0, 1, 2, 0, 1, 2]
    assert src.samples("test")[0].image_id == "cars_test/00001.jpg"
    assert "devkit/cars_meta.mat (196 classes)" in src.class_check


def test_cars_misplaced_test_annotations_are_pointed_out(tmp_path):
    make_cars(tmp_path, test_annos_in_devkit=True)
    with pytest.raises(DataError) as info:
        open_dataset("cars", tmp_path)
    msg = str(info.value)
    assert "missing: " + str(tmp_path / "stanford_cars" / "cars_test_annos_withlabels.mat") in msg
    assert "found " + str(tmp_path / "stanford_cars" / "devkit" / "cars_test_annos_withlabels.mat") in msg


def test_torchvision_readers_need_their_folder_name(tmp_path):
    make_flowers(tmp_path)
    shutil.move(tmp_path / "flowers-102", tmp_path / "my_flowers")
    with pytest.raises(DataError, match="folder named 'flowers-102'"):
        open_dataset("flowers", tmp_path / "my_flowers")


# --- Waterbirds ------------------------------------------------------------------------------------------


def test_waterbirds_labels_groups_and_logged_counts(tmp_path, caplog):
    _, expected = make_waterbirds(tmp_path)
    with caplog.at_level(logging.INFO, logger="augbench.data.readers.birds"):
        src = open_dataset("waterbirds", tmp_path)
    assert isinstance(src, WaterbirdsSource)
    assert src.split_names() == ["train", "val", "test"]
    for split in ("train", "val", "test"):
        assert src.group_counts(split) == expected[split]
    assert "waterbirds test: landbird on land 4, landbird on water 4, waterbird on land 4, waterbird on water 4" in caplog.text
    first = src.samples("test")[0]
    assert first.label == int(first.image_id.split(".")[0]) - 1 == 0
    assert first.attrs["y"] == 1 and first.attrs["group"] == f"{first.attrs['y']}{first.attrs['place']}"
    assert {s.label for s in src.samples("test")} == {0, 1, 12, 13}


def test_waterbirds_wilds_folder_and_verify_group_counts(tmp_path):
    _, expected = make_waterbirds(tmp_path / "data", folder="waterbirds_v1.0")
    small_card(
        tmp_path / "cards", "waterbirds", 14, {k: sum(v.values()) for k, v in expected.items()},
        waterbirds={"group_counts": expected},
    )
    card = load_card("waterbirds", tmp_path / "cards")
    report = verify_dataset(card, tmp_path / "data")
    assert report.ok, report.format()
    assert any("groups of 'test'" in c.what and "(as the card says)" in c.what for c in report.checks)
    wrong = {**expected, "test": {**expected["test"], "11": 99}}
    small_card(tmp_path / "cards", "waterbirds", 14, {k: sum(v.values()) for k, v in expected.items()},
               waterbirds={"group_counts": wrong})
    report = verify_dataset(load_card("waterbirds", tmp_path / "cards"), tmp_path / "data")
    assert [c.what.split(":")[0] for c in report.failures] == ["groups of 'test' (y, place)"]


def test_waterbirds_archive_with_an_extra_folder_level_is_found(tmp_path):
    make_waterbirds(tmp_path / "data" / "waterbird_complete95_forest2water2", folder="inner")
    src = open_dataset("waterbirds", tmp_path / "data")
    assert src.root.name == "inner" and len(src.samples("test")) == 16


def test_waterbirds_bad_metadata_is_explained(tmp_path):
    folder, _ = make_waterbirds(tmp_path)
    text = (folder / "metadata.csv").read_text().replace("img_filename", "filename", 1)
    (folder / "metadata.csv").write_text(text)
    with pytest.raises(DataError, match="missing column"):
        open_dataset("waterbirds", tmp_path)


def test_waterbirds_protocol_and_group_metrics(root):
    cub, wb = open_dataset("cub", root), open_dataset("waterbirds", root)
    proto = waterbirds(cub, wb, seed=0, shots=2)
    assert proto.train == few_shot(cub, 2, 0)
    assert proto.test.protocol == "waterbirds-species" and proto.test.split == "test"
    assert proto.group_counts == {"00": 4, "01": 4, "10": 4, "11": 4}
    samples = proto.test.samples
    # right on every landbird-on-land image and on one waterbird-on-water image, wrong elsewhere
    preds, done11 = [], False
    for s in samples:
        g = s.attrs["group"]
        right = g == "00" or (g == "11" and not done11)
        done11 = done11 or g == "11"
        preds.append(s.label if right else (s.label + 1) % 200)
    m = waterbirds_metrics(preds, proto.test)
    assert m.group_accuracy == {"00": 100.0, "01": 0.0, "10": 0.0, "11": 25.0}
    assert m.mean == pytest.approx(31.25) and m.pooled == pytest.approx(100.0 * 5 / 16)
    assert m.worst_group == "01" and m.worst == 0.0
    assert m.as_dict()["columns"] == {"L,L": 100.0, "L,W": 0.0, "W,L": 0.0, "W,W": 25.0}
    with pytest.raises(ValueError, match="predictions for"):
        waterbirds_metrics(preds[:-1], proto.test)
