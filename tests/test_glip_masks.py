"""GLIPv2's instance masks (issue 26): modulated-COCO segmentations read and written, the world's grounding files
carry each box's mask, the mask branch trains where data has masks and learns them, and the ``instances`` task
scores masks with COCOeval segm."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from clipdense.data.formats.grounding import GroundedImage, ModulatedCoco, write_modulated_coco
from clipdense.data.readers import open_data
from clipdense.errors import ConfigError, DataError
from clipdense.evaluation.detection import evaluate_detector
from clipdense.objectives import build_objective, objective_options
from glip_toy import fit_batch, small_world

TINY = {"channels": 32, "layers": 1, "fusion_dim": 32, "fusion_heads": 4, "layer_scale": 0.1, "image_size": 64}
SQUARE = [[2.0, 2.0, 6.0, 2.0, 6.0, 6.0, 2.0, 6.0]]   # a polygon covering pixels 2..5 x 2..5 (pycocotools' rule)


def _image(folder: Path, name: str, size: tuple[int, int] = (40, 30)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(folder / name)


def _doc(tmp_path: Path, annotations: list[dict]) -> Path:
    _image(tmp_path / "images", "a.png")
    doc = {"images": [{"id": 7, "file_name": "a.png", "width": 40, "height": 30, "caption": "a cat and a dog"}],
           "annotations": [{"id": i + 1, "image_id": 7, **a} for i, a in enumerate(annotations)],
           "categories": [{"id": 1, "name": "object"}]}
    path = tmp_path / "mdetr.json"
    path.write_text(json.dumps(doc))
    return path


def test_modulated_coco_reads_polygon_and_rle_segmentations_as_masks(tmp_path):
    from pycocotools import mask as mask_utils
    dog = np.zeros((30, 40), dtype=np.uint8)
    dog[10:20, 20:35] = 1
    rle = mask_utils.encode(np.asfortranarray(dog))
    rle["counts"] = rle["counts"].decode("ascii")
    path = _doc(tmp_path, [{"bbox": [2, 2, 4, 4], "tokens_positive": [[0, 5]], "segmentation": SQUARE},
                           {"bbox": [20, 10, 15, 10], "tokens_positive": [[10, 15]], "segmentation": rle}])
    sample = ModulatedCoco(tmp_path / "images", path, with_masks=True)[0]
    assert sample.masks.shape == (2, 30, 40) and sample.masks.dtype == torch.bool
    square = torch.zeros(30, 40, dtype=torch.bool)
    square[2:6, 2:6] = True
    assert torch.equal(sample.masks[0], square)
    assert torch.equal(sample.masks[1], torch.from_numpy(dog.astype(bool)))
    assert ModulatedCoco(tmp_path / "images", path)[0].masks is None          # masks only when asked for


def test_modulated_coco_masks_round_trip_and_refusals(tmp_path):
    _image(tmp_path / "images", "b.png")
    record = GroundedImage("b.png", 40, 30, "a cat", [[(0, 5)]], [[[2.0, 2.0, 6.0, 6.0]]], [[SQUARE]])
    write_modulated_coco(tmp_path / "out.json", [record])
    assert json.loads((tmp_path / "out.json").read_text())["annotations"][0]["segmentation"] == SQUARE
    assert int(ModulatedCoco(tmp_path / "images", tmp_path / "out.json", with_masks=True)[0].masks.sum()) == 16
    boxes_only = _doc(tmp_path / "plain", [{"bbox": [2, 2, 4, 4], "tokens_positive": [[0, 5]]}])
    with pytest.raises(DataError, match="no image has a 'segmentation' for every box"):
        ModulatedCoco(tmp_path / "plain" / "images", boxes_only, with_masks=True)
    broken = _doc(tmp_path / "broken", [{"bbox": [2, 2, 4, 4], "tokens_positive": [[0, 5]], "segmentation": [[1, 2]]},
                                        {"bbox": [2, 2, 4, 4], "tokens_positive": [[0, 5]], "segmentation": SQUARE}])
    reader = ModulatedCoco(tmp_path / "broken" / "images", broken, with_masks=True)
    assert len(reader[0].boxes) == 1 and reader.skips.count >= 1    # the unusable polygon's annotation: named


@pytest.fixture(scope="module")
def grounded_world(tmp_path_factory):
    return small_world(tmp_path_factory.mktemp("glip-mask-world"), 8, 4)


def test_world_grounding_masks_are_the_worlds_instance_masks(grounded_world):
    grounded, _, _ = open_data(str(grounded_world), needs={"boxes", "phrases", "masks"})
    coco, _, _ = open_data(str(grounded_world), needs={"boxes", "labels", "masks"})
    checked = 0
    for index in range(len(grounded)):
        sample, truth = grounded[index], coco[index]
        for box, mask in zip(sample.boxes, sample.masks):
            same = [m for b, m in zip(truth.boxes, truth.masks) if torch.allclose(b, box)]
            assert same and any(torch.equal(mask, m) for m in same)
            assert mask.any()
            checked += 1
    assert checked >= 8


def test_the_mask_loss_comes_only_with_mask_head_and_masked_data(bundle, grounded_world):
    reader, _, info = open_data(str(grounded_world), needs={"boxes", "phrases", "masks"})
    items = [i for i in range(len(reader)) if len(reader[i].boxes)][:3]
    out = {}
    for mask_head in (False, True):
        torch.manual_seed(0)
        objective = build_objective("glipv2", bundle, objective_options("glipv2", {**TINY, "mask_head": mask_head}),
                                    info)
        transform = objective.sample_transform()
        samples = [transform(reader[i], torch.Generator().manual_seed(i)) for i in items]
        out[mask_head] = objective(objective.collate(samples))
        assert objective.required_fields(objective.options) >= ({"masks"} if mask_head else set())
    assert "loss_mask" not in out[False] and 0 < float(out[True]["loss_mask"]) < 5
    total = {k: float(v["loss"].detach()) for k, v in out.items()}
    assert total[True] == pytest.approx(total[False] + float(out[True]["loss_mask"]), rel=1e-4)
    with pytest.raises(ConfigError, match="mask_samples"):
        build_objective("glipv2", bundle, objective_options("glipv2", {**TINY, "mask_head": True, "mask_samples": 0}),
                        info)


@pytest.mark.slow
def test_the_mask_branch_learns_the_masks_of_a_handful_of_scenes(bundle, grounded_world):
    reader, _, info = open_data(str(grounded_world), needs={"boxes", "phrases", "masks"})
    torch.manual_seed(0)
    objective = build_objective("glipv2", bundle, objective_options("glipv2", {**TINY, "mask_head": True,
                                                                              "jitter": [1.0, 1.0]}), info)
    head = objective.head
    items = [i for i in range(len(reader)) if len(reader[i].boxes)][:4]
    transform = objective.sample_transform()
    batch = objective.collate([transform(reader[i], torch.Generator().manual_seed(i)) for i in items])
    fit_batch(objective, batch, 60)
    head.eval()
    ious = []
    with torch.no_grad():
        images = [batch["image"][k][:, :h, :w] for k, (h, w) in enumerate(batch["size"].tolist())]
        pred, _ = head(images, batch["ids"])
        boxes = [b[v] for b, v in zip(batch["boxes"], batch["valid"])]
        probs = head.masks(pred.levels, boxes, pred.image_sizes).sigmoid()
        from torchvision.models.detection.roi_heads import paste_masks_in_image
        for k, part in enumerate(probs.split([len(b) for b in boxes])):
            pasted = paste_masks_in_image(part, boxes[k], tuple(images[k].shape[-2:]))[:, 0] >= 0.5
            truth = batch["masks"][k][batch["valid"][k]][:, :images[k].shape[1], :images[k].shape[2]]
            inter = (pasted & truth).flatten(1).sum(1).float()
            union = (pasted | truth).flatten(1).sum(1).float()
            ious += (inter / union).tolist()
    assert np.mean(ious) >= 0.7, ious


class _Oracle:
    """A detector stub that returns each sample's own boxes (label by class) with masks given by ``mask_of``."""

    kind = "oracle"

    def __init__(self, reader, mask_of):
        self.classes, self.config = list(reader.classes), SimpleNamespace(novel=[])
        self.logit_scale, self.reader, self.mask_of, self.calls = torch.zeros(()), reader, mask_of, 0

    def detect(self, images, names):
        out = []
        for _ in images:
            sample = self.reader[self.calls]
            self.calls += 1
            kept = [k for k, c in enumerate(sample.labels.tolist()) if self.reader.classes[c] in names]
            label = torch.tensor([names.index(self.reader.classes[c]) for c in sample.labels[kept].tolist()],
                                 dtype=torch.long)
            masks = torch.stack([self.mask_of(sample.masks[k]) for k in kept]) if kept else sample.masks[:0]
            out.append({"boxes": sample.boxes[kept], "scores": torch.ones(len(label)), "labels": label,
                        "masks": masks[:, None].float()})
        return out


def test_instances_scores_perfect_masks_100_and_shifted_masks_lower(grounded_world):
    reader, _, _ = open_data(str(grounded_world), needs={"boxes", "labels", "masks"}, split="val")
    perfect, _ = evaluate_detector(_Oracle(reader, lambda m: m), reader, batch_size=2, masks=True)
    assert perfect["AP50"]["all"] == 100.0 and perfect["mask"]["AP"]["all"] == 100.0
    shifted, _ = evaluate_detector(_Oracle(reader, lambda m: torch.roll(m, 6, dims=1)), reader, batch_size=2,
                                   masks=True)
    assert shifted["AP"]["all"] == 100.0 and shifted["mask"]["AP"]["all"] < 60.0
    boxes_only, _ = evaluate_detector(_Oracle(reader, lambda m: m), reader, batch_size=2)
    assert "mask" not in boxes_only


def test_class_agnostic_ap_ignores_the_names_and_keeps_the_masks(grounded_world):
    reader, _, _ = open_data(str(grounded_world), needs={"boxes", "labels", "masks"}, split="val")
    oracle = _Oracle(reader, lambda m: m)
    detect = oracle.detect
    oracle.detect = lambda images, names: [{**d, "labels": (d["labels"] + 1) % len(names)} for d in detect(images, names)]
    wrong_names, _ = evaluate_detector(oracle, reader, batch_size=2, masks=True, agnostic=True)
    assert wrong_names["AP50"]["all"] == 0.0 and wrong_names["mask"]["AP50"]["all"] == 0.0   # every name wrong
    assert wrong_names["agnostic"]["AP"]["all"] == 100.0 and wrong_names["agnostic"]["mask"]["AP"]["all"] == 100.0
