"""Issue 27: F-ViT's mask branch (torchvision's Mask R-CNN head parts over the RoI features, class-agnostic): the
transform carries each base box's mask through flip and jitter, the loss is Mask R-CNN's on the matched masks,
inference pastes one mask per detection into the image (any class name, novel ones too), the head file keeps the
branch, `detect` draws masks, and the branch learns on a handful of world images (slow)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

import clipdense as cd
from clipdense.data.sample import Sample
from clipdense.errors import ConfigError
from clipdense.heads.detection import DetectorConfig, FViTDetector
from clipdense.objectives import build_objective
from clipdense.objectives.fvit import batch_targets, detection_collate
from clipdense.objectives.base import DataInfo
from clipdense.tasks.detect import Detections, draw_detections

TINY = {"image_size": 64, "fpn_channels": 16, "head_channels": 16, "fc_channels": 32, "roi_batch": 32,
        "rpn_batch": 32, "rpn_pre_nms_train": 100, "rpn_post_nms_train": 50, "rpn_pre_nms_test": 100,
        "rpn_post_nms_test": 20, "templates": "world", "anchor_sizes": [8, 16, 32, 64, 128]}
INFO = DataInfo(classes=("red circle", "blue star", "green square"), isthing=(True, True, True),
                novel=("green square",))


def _sample() -> Sample:
    masks = torch.zeros(3, 40, 48, dtype=torch.bool)
    masks[0, 4:12, 6:20] = True
    masks[1, 20:36, 30:44] = True
    masks[2, 2:10, 30:40] = True
    boxes = torch.tensor([[6, 4, 20, 12], [30, 20, 44, 36], [30, 2, 40, 10]], dtype=torch.float32)
    return Sample(Image.new("RGB", (48, 40)), "s", boxes=boxes, labels=torch.tensor([0, 1, 2]), masks=masks)


def test_transform_moves_masks_with_their_boxes(bundle):
    objective = build_objective("fvit", bundle, {**TINY, "mask_head": True, "jitter": [0.5, 1.5]}, INFO)
    assert objective.required_fields(objective.options) == {"boxes", "labels", "masks"}
    transform = objective.sample_transform()
    items = [transform(_sample(), torch.Generator().manual_seed(seed)) for seed in range(4)]
    for item in items:
        count = int((item["labels"] > 0).sum())
        assert 1 <= count <= 2 and item["masks"].shape == (count, 64, 64)   # the novel class's mask is dropped too
        for box, mask in zip(item["boxes"][:count], item["masks"]):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            found = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
            assert torch.allclose(found, box, atol=1.5)                    # the box is its mask's box
    batch = detection_collate(items)
    assert isinstance(batch["masks"], list) and batch["image"].shape == (4, 3, 64, 64)
    _, targets = batch_targets(batch)
    for target, size in zip(targets, batch["size"].tolist()):
        assert target["masks"].shape == (len(target["boxes"]), *size)
    plain = build_objective("fvit", bundle, TINY, INFO)
    assert "masks" not in plain.sample_transform()(_sample(), torch.Generator().manual_seed(0))
    assert plain.required_fields(plain.options) == {"boxes", "labels"}


def test_mask_loss_is_mask_rcnn_bce_on_the_matched_masks(bundle):
    """A proposal inside its object: the target is the mask resampled to 28 x 28 in the box (all ones here), and
    the loss is the mean BCE-with-logits of the class-agnostic channel against it."""
    torch.manual_seed(0)
    detector = FViTDetector(bundle, DetectorConfig(**TINY, mask_head=True), ["red circle"])
    images = [torch.rand(3, 64, 64)]
    masks = torch.ones(1, 64, 64, dtype=torch.bool)     # wider than the box: every sampled target pixel is 1
    targets = [{"boxes": torch.tensor([[16.0, 8.0, 48.0, 40.0]]), "labels": torch.tensor([1]), "masks": masks}]
    detector.train()
    features = detector.features(images, targets)
    proposals = [targets[0]["boxes"].clone()]
    loss = detector.mask_loss(features, proposals, [torch.tensor([0])], [torch.tensor([1])])
    logits = detector.mask_logits(features, proposals)[:, 0]
    expected = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    assert torch.allclose(loss, expected, atol=1e-6)
    background = detector.mask_loss(features, proposals, [torch.tensor([0])], [torch.tensor([0])])
    assert float(background.detach()) == 0.0                       # no positive region: no mask loss
    step = detector.losses(images, targets, detector.text_embeddings(["red circle"]), torch.tensor([True]), 0.2)
    assert "loss_mask" in step.losses and step.losses["loss_mask"] > 0


def test_detect_gives_one_mask_per_detection_and_the_head_keeps_the_branch(bundle, tmp_path):
    torch.manual_seed(0)
    detector = FViTDetector(bundle, DetectorConfig(**TINY, mask_head=True, score_threshold=0.0), ["red circle"])
    found = detector.detect([torch.rand(3, 40, 52)], ["red circle", "yellow heart"])[0]
    assert len(found["boxes"]) and found["masks"].shape == (len(found["boxes"]), 1, 40, 52)
    assert (found["labels"] == 1).any()                    # a class never trained on gets masks too
    plain = FViTDetector(bundle, DetectorConfig(**TINY), ["red circle"]).detect([torch.rand(3, 40, 52)])[0]
    assert "masks" not in plain
    path = tmp_path / "head.safetensors"
    cd.save_head(detector, path, bundle)
    loaded = cd.load_head(path, bundle)
    assert loaded.has_masks and any(k.startswith("roi_heads.mask_head") for k in loaded.state_dict())
    for key, value in detector.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_draw_detections_tints_masks():
    image = Image.new("RGB", (20, 10), (0, 0, 0))
    masks = torch.zeros(1, 10, 20, dtype=torch.bool)
    masks[0, 6:9, 1:4] = True
    found = Detections(torch.tensor([[10.0, 1.0, 18.0, 5.0]]), torch.tensor([0.9]), torch.tensor([0]), ["a"], masks)
    drawn = draw_detections(image, found)
    assert drawn.getpixel((2, 7)) != (0, 0, 0) and drawn.getpixel((2, 2)) == (0, 0, 0)
    assert found.above(0.95).masks.shape == (0, 10, 20)


def test_coco_results_carry_each_masks_rle():
    """detect --json / to_coco: with masks, each entry's segmentation decodes (pycocotools) back to its mask."""
    from pycocotools import mask as mask_utils
    masks = torch.zeros(2, 10, 20, dtype=torch.bool)
    masks[0, 6:9, 1:4] = True
    masks[1, 0:2, 10:20] = True
    found = Detections(torch.tensor([[1.0, 6.0, 4.0, 9.0], [10.0, 0.0, 20.0, 2.0]]), torch.tensor([0.9, 0.5]),
                       torch.tensor([0, 1]), ["a", "b"], masks)
    entries = found.to_coco(7)
    assert [e["category_id"] for e in entries] == [1, 2] and entries[0]["bbox"] == [1.0, 6.0, 3.0, 3.0]
    for entry, mask in zip(entries, masks):
        assert isinstance(entry["segmentation"]["counts"], str)
        rle = {**entry["segmentation"], "counts": entry["segmentation"]["counts"].encode()}
        assert (mask_utils.decode(rle).astype(bool) == mask.numpy()).all()
    assert "segmentation" not in Detections(found.boxes, found.scores, found.labels, ["a", "b"]).to_coco(7)[0]


def test_vild_refuses_a_mask_head(bundle):
    with pytest.raises(ConfigError, match="mask_head"):
        build_objective("vild", bundle, {**TINY, "mask_head": True}, INFO)


@pytest.mark.slow   # 80 training steps
def test_fvit_mask_branch_learns_a_handful_of_world_images(tmp_path):
    from clipdense.data.readers import open_data
    from clipdense.data.world.scenes import SynthConfig
    from clipdense.data.world.writers import write_world
    from clipdense.evaluation.lvis_ap import LvisTruth, detection_results, lvis_ap
    from clipdense.train.config import TrainConfig
    from clipdense.train.run import run_training
    world = tmp_path / "world"
    write_world(SynthConfig(out=str(world), train=4, val=1, image_size=64, max_objects=2, empty_fraction=0.0,
                            classify_train_per_class=0, classify_val_per_class=0))
    small = {**TINY, "image_size": 128, "fpn_channels": 32, "head_channels": 32, "fc_channels": 64,
             "anchor_sizes": [16, 32, 64, 128, 256], "jitter": [1.0, 1.0], "hflip": False, "mask_head": True}
    run = tmp_path / "run"
    run_training(TrainConfig(objective="fvit", data=str(world), model="tiny-vit-t8", pretrained="synthworld",
                             out=str(run), steps=80, batch_size=4, lr=1e-3, warmup_steps=5, checkpoint_every=80,
                             log_every=20, objective_args=small))
    backbone = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    head = cd.load_head(run, backbone)
    reader, _, info = open_data(str(world), {"boxes", "labels", "masks"}, "train")
    names = list(head.classes)
    truth = LvisTruth(names, list(info.classes), ["f"] * len(info.classes))
    results = []
    for i in range(len(reader)):
        sample = reader[i]
        det = head.detect([TF.to_tensor(sample.image)], names)[0]
        results += detection_results(det, truth.add(sample))[1]
    scores = lvis_ap(truth.doc, results, "segm")
    print("mask AP / AP50 on the 4 train images:", scores["AP"], scores["AP50"])
    assert scores["AP50"] > 50
