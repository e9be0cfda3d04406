"""Writers and readers round-trip: what `write_world` wrote is what the readers give back."""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import tarfile

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from clipdense.data import (CocoPanopticRegions, CocoRegions, ImageFolderDataset, ImageTextDataset, SemSegFolder,
                            SynthConfig, open_world, write_world)
from clipdense.data.formats.coco import panoptic_ids
from clipdense.errors import DataError


def _tiny(out, **kw):
    base = dict(out=str(out), train=20, val=8, image_size=64, seed=1, shard_size=8,
                classify_train_per_class=1, classify_val_per_class=1)
    base.update(kw)
    return SynthConfig(**base)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    write_world(_tiny(out))
    return open_world(out)


def test_world_json_lists_classes_splits_and_paths(world):
    meta = world.meta
    assert world.classes == world.things + world.stuff and world.ignore_index == 255
    assert world.classes_file.read_text().splitlines() == world.classes
    assert meta["splits"]["train"]["images"] == 20 and meta["splits"]["train"]["num_shards"] == 3
    train = world.split("train")
    assert len(list(train.image_dir.glob("*.png"))) == 20 and train.csv.is_file()
    assert (world.root / "README.md").read_text().startswith("# clipdense synthetic world")
    assert (world.root / "config.yaml").is_file()
    with pytest.raises(DataError, match="no split 'test'"):
        world.split("test")


def test_csv_and_shards_hold_the_same_pairs(world):
    train = world.split("train")
    with open(train.csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["filepath"] for r in rows] == [f"train/images/{i:06d}.png" for i in range(20)]
    from_csv = {s["key"]: s["caption"] for s in ImageTextDataset(world.root, "train", shuffle=False)}
    from_wds = {s["key"]: s["caption"] for s in ImageTextDataset(world.root, "train", format="wds", shuffle=False)}
    assert from_csv == from_wds == {f"{i:06d}": r["title"] for i, r in enumerate(rows)}
    with tarfile.open(world.root / "shards" / "train-000000.tar") as tar:
        names = tar.getnames()
        png = tar.extractfile("000000.png").read()
    assert names[:3] == ["000000.png", "000000.txt", "000000.json"]
    assert png == (train.image_dir / "000000.png").read_bytes()


def test_coco_masks_match_boxes_semseg_and_panoptic(world):
    val = world.split("val")
    regions = CocoRegions(val.image_dir, val.instances, val.stuff)
    panoptic = CocoPanopticRegions(val.image_dir, val.panoptic, val.panoptic_dir)
    semseg = SemSegFolder(val.image_dir, val.semseg_dir, world.classes_file)
    assert len(regions) == len(panoptic) == len(semseg) == 8
    things_seen = 0
    assert regions.classes == panoptic.classes == world.classes   # category id i + 1 <-> class i
    for r, p, s in zip(regions, panoptic, semseg):
        names = regions.category_index.names(r.labels)
        assert r.key == p.key and names == panoptic.category_index.names(p.labels)
        isthing = regions.isthing[r.labels]
        assert bool(isthing.any()) == any(n in world.things for n in names)
        assert all((n in world.things) == bool(t) for n, t in zip(names, isthing))
        assert torch_equal(r.masks, p.masks)
        for box, mask, label in zip(r.boxes, r.masks, r.labels):
            ys, xs = np.nonzero(mask.numpy())
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert (s.semantic[mask] == label).all()  # semantic label i == class i
        covered = r.masks.any(0)
        assert covered.all()  # every pixel is a thing or stuff: no background class
        things_seen += int(isthing.sum())
    assert things_seen > 0


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_instances_json_is_valid_coco_with_rle(world):
    doc = json.loads(world.split("train").instances.read_text())
    cats = {c["id"]: c for c in doc["categories"]}
    assert {c["supercategory"] for c in cats.values()} == {"thing", "stuff"}
    for ann in doc["annotations"]:
        assert cats[ann["category_id"]]["isthing"] == 1 and ann["iscrowd"] == 0
        rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
        assert mask_utils.area(rle) == ann["area"] > 0
        assert np.allclose(mask_utils.toBbox(rle), ann["bbox"])
        assert cats[ann["category_id"]]["name"] not in world.novel_things


def test_imagefolder_split_has_one_folder_per_thing(world):
    folder = ImageFolderDataset(world.split("val").classify_dir)
    assert folder.classes == sorted(world.things) and len(folder) == len(world.things)
    sample = folder[0]
    assert sample.image.size == (64, 64) and folder.classes[sample.image_label] == folder.classes[0]


def test_output_is_identical_for_the_same_seed_and_any_worker_count(tmp_path, world):
    write_world(_tiny(tmp_path / "again", train=20, val=0, workers=2))
    for name in ("train.csv", "annotations/instances_train.json", "shards/train-000002.tar", "semseg/train/000007.png"):
        a, b = (world.root / name).read_bytes(), (tmp_path / "again" / name).read_bytes()
        assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest(), name


def test_semseg_labels_are_single_channel_indices(world):
    label = Image.open(world.split("train").semseg_dir / "000000.png")
    assert label.mode == "L" and np.asarray(label).max() < len(world.classes)
    ids = panoptic_ids(world.split("train").panoptic_dir / "000000.png")
    assert ids.min() >= 1


def test_cli_data_synth_writes_a_world_and_reports_speed(tmp_path, capsys):
    from clipdense.cli import data as data_cli
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "synth", "--out", str(tmp_path / "w"), "--train", "12", "--val", "4",
                              "--image-size", "48", "--shard-size", "5", "--classify-train-per-class", "1",
                              "--classify-val-per-class", "0", "--colours", "red,blue", "--shapes",
                              "circle,square,star"])
    assert args.func(args) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("wrote 12 train + 4 val scenes") and "images/s" in line
    world = open_world(tmp_path / "w")
    assert len(world.things) == 6 + 4 and world.meta["config"]["image_size"] == 48
    assert len(list((tmp_path / "w" / "shards").glob("train-*.tar"))) == 3
