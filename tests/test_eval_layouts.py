"""Evaluation on real dataset layouts that are not a world, and the task registry.

Hand-made data: a COCO folder (instances JSON with non-contiguous category ids, a stuff category inside
it, a COCO-Stuff JSON beside it, one crowd annotation), an ADE-style semantic folder (label 0 = "other",
reduce_zero_label), an ImageFolder and an open_clip CSV with two captions per image. Every picture is
made of flat palette colours named by their class, so a toy analytic "model" that sees colours (the
habit of test_eval_tasks.py) must score exactly 100 % on every task: a wrong class mapping, a crowd box
counted, or an off-by-one label shows up as a number below 1. The CLI runs use the shipped tiny model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

from clipdense.cli.main import main
from clipdense.errors import ConfigError, DataError
from clipdense.evaluation import EVAL_TASKS, EvalContext, EvalSettings, open_eval_data, option, plan_tasks, \
    register_task
from clipdense.models import pool_boxes, pool_masks

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

COLOURS = {"black": (0, 0, 0), "blue": (0, 0, 255), "green": (0, 255, 0), "cyan": (0, 255, 255),
           "red": (255, 0, 0), "magenta": (255, 0, 255), "yellow": (255, 255, 0), "white": (255, 255, 255)}
NAMES = list(COLOURS)
PALETTE = torch.tensor([[c / 127.5 - 1 for c in rgb] for rgb in COLOURS.values()])   # (8, 3) in [-1, 1]
W, H = 64, 48


# ---------------------------------------------------------------- the toy model: it sees colours

def colour_feature(pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, ...) pixels in [-1, 1] -> (B, 8, ...) nearly one-hot on the nearest palette colour."""
    return (10 * torch.tensordot(pixels.movedim(1, -1), PALETTE.t(), dims=1)).softmax(-1).movedim(-1, 1)


class ColourContext(EvalContext):
    """An EvalContext whose 'model' sees colours: a class name's text embedding is its colour's one-hot."""

    patch_size = 4   # its dense map below: one feature per 4 x 4 pixels

    def __init__(self, data_spec: str, split: str = "val", **settings: object) -> None:
        self.data = open_eval_data(data_spec, split)
        self.settings = EvalSettings(**settings)
        self.modes, self.short_side, self.head = ("toy",), H, None
        self.input_size, self.pool_boxes, self.pool_masks = (32, 32), pool_boxes, pool_masks
        self._mean, self._std = [0.5] * 3, [0.5] * 3             # to_tensor below: (p - 0.5) / 0.5
        self.preprocess = lambda image: self.to_tensor(image.resize((32, 32)))

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        return TF.to_tensor(image) * 2 - 1

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Mean colour of the central half: the object of an expanded crop, the background of a scene."""
        h, w = images.shape[-2:]
        return colour_feature(images[..., h // 4: h - h // 4, w // 4: w - w // 4].mean((2, 3)))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return torch.eye(8)[[next(i for i, n in enumerate(NAMES) if n in t.split()) for t in texts]]

    def classifier(self, names: list[str]) -> torch.Tensor:
        return torch.eye(8)[[NAMES.index(n) for n in names]]

    def dense(self, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda images: colour_feature(F.avg_pool2d(images, 4))

    def segment_logits(self, mode: str, classifier: torch.Tensor, window: int | None = None,
                       stride: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda images: torch.einsum("bkhw,ck->bchw", colour_feature(images), classifier)


def run_task(name: str, ctx: EvalContext) -> dict:
    task = EVAL_TASKS[name]
    result, _ = task.run(ctx, ctx.data.open(task), task.build_options())
    return result


# ---------------------------------------------------------------- hand-made datasets

def canvas(background: str, boxes: list[tuple[str, tuple[int, int, int, int]]]) -> Image.Image:
    image = Image.new("RGB", (W, H), COLOURS[background])
    for colour, (x0, y0, x1, y1) in boxes:
        image.paste(COLOURS[colour], (x0, y0, x1, y1))
    return image


def rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE (column-major runs, starting with a run of zeros)."""
    flat = mask.astype(np.uint8).flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return {"counts": ([0] if flat[0] else []) + runs, "size": [mask.shape[0], mask.shape[1]]}


def box_mask(box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[box[1]:box[3], box[0]:box[2]] = True
    return mask


# Objects sit in the corners, so the central half of a scene (the toy's 'crop' of a stuff region) is background.
TOP_LEFT, BOTTOM_RIGHT, TOP_RIGHT = (0, 0, 16, 12), (48, 36, 64, 48), (48, 0, 64, 12)
SCENES = {  # file -> (background, [(thing colour, box, iscrowd)])
    "a.png": ("green", [("red", TOP_LEFT, 0), ("blue", BOTTOM_RIGHT, 0)]),
    "b.jpg": ("white", [("red", TOP_LEFT, 1), ("blue", TOP_RIGHT, 0)]),
    "c.png": ("green", []),
}
CATEGORY_IDS = {"red": 3, "blue": 9, "white": 21, "black": 55}   # non-contiguous; black has no annotation
STUFF_IDS = {"green": 40}                                          # in the COCO-Stuff file


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("coco")
    (root / "images").mkdir()
    instances = {"images": [], "annotations": [], "categories": [
        {"id": cid, "name": name, "supercategory": "colour", "isthing": int(name != "white")}
        for name, cid in CATEGORY_IDS.items()]}
    stuff = {"images": [], "annotations": [], "categories": [{"id": 40, "name": "green", "supercategory": "stuff"}]}
    for image_id, (file, (background, things)) in enumerate(SCENES.items(), start=100):
        canvas(background, [(c, b) for c, b, _ in things]).save(root / "images" / file, quality=100)
        info = {"id": image_id, "file_name": file, "width": W, "height": H}
        instances["images"].append(info)
        stuff["images"].append(info)
        for colour, (x0, y0, x1, y1), crowd in things:
            segmentation = rle(box_mask((x0, y0, x1, y1))) if crowd else [[x0, y0, x1, y0, x1, y1, x0, y1]]
            instances["annotations"].append({"id": len(instances["annotations"]) + 1, "image_id": image_id,
                                             "category_id": CATEGORY_IDS[colour], "bbox": [x0, y0, x1 - x0, y1 - y0],
                                             "area": (x1 - x0) * (y1 - y0), "iscrowd": crowd,
                                             "segmentation": segmentation})
        background_mask = np.ones((H, W), dtype=bool)
        for _, box, _ in things:
            background_mask &= ~box_mask(box)
        target = (instances if background == "white" else stuff)
        target["annotations"].append({"id": 1000 + image_id, "image_id": image_id, "iscrowd": 0,
                                      "category_id": {**CATEGORY_IDS, **STUFF_IDS}[background], "bbox": [0, 0, W, H],
                                      "area": int(background_mask.sum()), "segmentation": rle(background_mask)})
    (root / "annotations").mkdir()
    (root / "annotations" / "instances.json").write_text(json.dumps(instances))
    (root / "annotations" / "stuff.json").write_text(json.dumps(stuff))
    return {"images": root / "images", "instances": root / "annotations" / "instances.json",
            "stuff": root / "annotations" / "stuff.json"}


def coco_spec(paths: dict[str, Path], stuff: bool = True) -> str:
    return f"coco:images={paths['images']},annotations={paths['instances']}" + \
        (f",stuff={paths['stuff']}" if stuff else "")


ADE_CLASSES = ["red", "green", "blue"]   # label PNG value i + 1; 0 is "other" (ignored)


@pytest.fixture(scope="module")
def ade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """images/*.jpg + annotations/*.png + classes.txt; a black band labelled 0 must be ignored."""
    root = tmp_path_factory.mktemp("ade")
    (root / "images").mkdir()
    (root / "annotations").mkdir()
    (root / "classes.txt").write_text("\n".join(ADE_CLASSES) + "\n")
    for index, (left, right) in enumerate([("red", "green"), ("green", "blue")]):
        image = canvas(left, [(right, (32, 0, 64, 40)), ("black", (0, 40, 64, 48))])
        label = np.full((H, W), ADE_CLASSES.index(left) + 1, dtype=np.uint8)
        label[0:40, 32:64] = ADE_CLASSES.index(right) + 1
        label[40:48] = 0
        image.save(root / "images" / f"scene_{index}.png")
        Image.fromarray(label, mode="L").save(root / "annotations" / f"scene_{index}.png")
    return root


def ade_spec(root: Path) -> str:
    return f"semseg:images={root / 'images'},labels={root / 'annotations'},classes={root / 'classes.txt'}," \
           "reduce_zero_label=true"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ImageFolder of flat-colour objects on black, and an open_clip CSV with two captions per image."""
    root = tmp_path_factory.mktemp("folder")
    rows = ["filepath,title"]
    for name in ("red", "blue", "yellow", "cyan"):
        (root / "classes" / name).mkdir(parents=True)
        for i in range(2):
            canvas("black", [(name, (16, 12, 48, 36))]).save(root / "classes" / name / f"{i}.png")
        rows += [f"classes/{name}/0.png,a {name} square", f"classes/{name}/0.png,the {name} one"]
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def toy_task() -> Iterator[str]:
    """A task registered the way a new task module registers itself; removed afterwards."""
    @dataclass(frozen=True)
    class ToyOptions:
        scale: int = option(1, "multiply the counts", low=1, what="a factor")

    @register_task("toy-pixels", needs={"semantic"}, summary="labelled pixels per image", options=ToyOptions,
                   report=lambda result: [f"labelled pixels per image: {result['labelled_pixels']}"])
    def run(ctx: EvalContext, reader, options: ToyOptions) -> tuple[dict, int]:
        counts = [options.scale * int((s.semantic != s.ignore_index).sum()) for s in reader]
        return {"labelled_pixels": counts, "classes": list(reader.classes)}, len(counts)
    yield "toy-pixels"
    EVAL_TASKS.pop("toy-pixels")


# ---------------------------------------------------------------- exact answers with the toy model

def test_regions_on_a_coco_folder_are_exact(coco: dict[str, Path]) -> None:
    ctx = ColourContext(coco_spec(coco), batch_size=2)
    reader = ctx.data.open(EVAL_TASKS["regions"])
    assert reader.classes == ["red", "blue", "white", "green", "black"]   # sorted by category id
    assert reader.isthing.tolist() == [True, True, False, False, True]
    res = run_task("regions", ctx)
    assert res["num_regions"] == {"things": 3, "stuff": 3}   # the crowd box is left out; white is stuff
    for method in (res["crops"], res["dense"]["toy"]["rois"], res["dense"]["toy"]["maskpool"]):
        assert method["things"]["top1"] == 1.0 and method["stuff"]["top1"] == 1.0
    assert res["chance"]["top1"] == pytest.approx(1 / 5)
    assert sum(res["num_things_by_size"].values()) == 3
    assert res["dense"]["toy"]["rois"]["things_by_size"].keys() == res["crops"]["things_by_size"].keys()
    without_stuff_file = run_task("regions", ColourContext(coco_spec(coco, stuff=False)))
    assert without_stuff_file["num_regions"] == {"things": 3, "stuff": 1}


def test_segmentation_on_an_ade_folder_is_exact(ade: Path) -> None:
    res = run_task("segmentation", ColourContext(ade_spec(ade)))["toy"]
    argmax = res["argmax"]
    assert argmax["miou"] == 1.0 and argmax["pixel_acc"] == 1.0
    assert argmax["num_pixels"] == 2 * W * 40   # the band labelled 0 is ignored
    assert res["background"]["object_pixel_acc"] == 1.0   # no world: every class counts as a thing


def test_zeroshot_on_an_imagefolder_and_retrieval_on_a_csv_are_exact(folder: Path) -> None:
    zs = run_task("zeroshot", ColourContext(f"imagefolder:root={folder / 'classes'}"))
    assert zs["top1"] == 1.0 and zs["num_samples"] == 8 and zs["num_classes"] == 4
    rt = run_task("retrieval", ColourContext(str(folder / "pairs.csv"), batch_size=3))
    assert rt["num_images"] == 4 and rt["num_texts"] == 8
    assert rt["image_to_text"]["R@1"] == 1.0 and rt["text_to_image"]["R@1"] == 1.0


# ---------------------------------------------------------------- what the data can feed

def test_plan_skips_or_refuses_what_the_data_lacks(coco: dict[str, Path], ade: Path) -> None:
    plan = plan_tasks(coco_spec(coco), "all")
    assert [t.name for t in plan.tasks] == ["regions"] and plan.data.split is None
    image_tasks = {"zeroshot": "needs image_label", "retrieval": "needs caption", "segmentation": "needs semantic",
                   "detection": "needs --head"}
    assert {k: plan.skipped[k] for k in image_tasks} == image_tasks
    assert set(plan.skipped) == set(EVAL_TASKS) - {"regions"}     # every other registered task is skipped, said why
    with pytest.raises(DataError, match="'zeroshot' needs image_label"):
        plan_tasks(ade_spec(ade), "segmentation,zeroshot")
    with pytest.raises(ConfigError, match="--tasks"):
        plan_tasks(ade_spec(ade), "segmentation,nonesuch")
    with pytest.raises(DataError, match="'detection' needs boxes"):
        plan_tasks(ade_spec(ade), "segmentation,detection", head="any.safetensors")
    with pytest.raises(ConfigError, match="--head"):
        plan_tasks(coco_spec(coco), "detection")
    with pytest.raises(DataError, match="semseg"):
        plan_tasks(f"semseg:images={ade / 'images'}", "all")


# ---------------------------------------------------------------- the CLI with the shipped tiny model

def _eval(data: str, out: Path, *extra: str) -> int:
    return main(["eval", "--model", "tiny-vit-t8", "--pretrained", "synthworld", "--data", data, "--device", "cpu",
                 "--templates", "photo", "--batch-size", "4", "--no-progress", "--out", str(out), *extra])


def test_cli_eval_on_a_coco_folder(coco: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _eval(coco_spec(coco), tmp_path / "coco.json", "--dense-mode", "maskclip,vanilla") == 0
    res = json.loads((tmp_path / "coco.json").read_text())
    assert list(res["tasks"]) == ["regions"] and res["split"] is None and res["data_format"] == "coco"
    regions = res["tasks"]["regions"]
    assert regions["num_regions"] == {"things": 3, "stuff": 3}
    assert set(regions["dense"]) == {"maskclip", "vanilla"}
    for method in (regions["crops"], *regions["dense"]["maskclip"].values()):
        assert all(0.0 <= method[kind][k] <= 1.0 for kind in ("things", "stuff") for k in ("top1", "top5"))
    printed = capsys.readouterr().out
    assert "Not run (the data has boxes, labels, masks): zeroshot needs image_label; retrieval needs caption; " \
        "segmentation needs semantic; detection needs --head" in printed and "[val]" not in printed


def _colour_segmenter(monkeypatch: pytest.MonkeyPatch, names: dict[str, str]) -> None:
    """The CLI's model segments by colour, like ``ColourContext``: class ``n``'s text row is colour ``names[n]``'s
    one-hot (``names`` maps a class to itself for an oracle, to another colour for a deranged segmenter)."""
    def segment_logits(self: EvalContext, mode: str, classifier: torch.Tensor, *window: object
                       ) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda images: torch.einsum("bkhw,ck->bchw", colour_feature(images), classifier)

    monkeypatch.setattr(EvalContext, "to_tensor", lambda self, image: TF.to_tensor(image) * 2 - 1)
    monkeypatch.setattr(EvalContext, "classifier",
                        lambda self, classes, *rest: torch.eye(8)[[NAMES.index(names[n]) for n in classes]])
    monkeypatch.setattr(EvalContext, "segment_logits", segment_logits)


def test_cli_eval_on_an_ade_folder_and_a_yaml(ade: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the CLI, with the model's segmenter replaced by one that sees colours (read at the labels' size,
    ``--image-size 48``): the oracle scores exactly 1 on both ways of naming the ADE folder; one that swaps red and
    green scores what the layout gives by hand."""
    yaml_path = ade / "data.yaml"
    yaml_path.write_text("format: semseg\nimages: images\nlabels: annotations\nclasses: classes.txt\n"
                         "reduce_zero_label: true\n")

    def miou(data: str, name: str) -> dict:
        assert _eval(data, tmp_path / name, "--tasks", "segmentation", "--image-size", str(H)) == 0
        return json.loads((tmp_path / name).read_text())["tasks"]["segmentation"]["maskclip"]["argmax"]

    _colour_segmenter(monkeypatch, {n: n for n in ADE_CLASSES})
    for data, name in ((ade_spec(ade), "ade.json"), (str(yaml_path), "yaml.json")):
        seg = miou(data, name)
        assert seg["num_pixels"] == 2 * W * 40 and seg["miou"] == 1.0 and seg["pixel_acc"] == 1.0
    # swapped: scene 0's red half (1280 px) is called green and both green halves (2560 px) red, so red and green
    # have IoU 0; the blue half (1280 px) stays right: IoU 1, mIoU 1/3, pixel accuracy 1280 / 5120
    _colour_segmenter(monkeypatch, {"red": "green", "green": "red", "blue": "blue"})
    seg = miou(str(yaml_path), "swapped.json")
    assert seg["num_pixels"] == 2 * W * 40 and seg["pixel_acc"] == 0.25
    assert seg["miou"] == pytest.approx(1 / 3) and seg["iou_per_class"] == pytest.approx([0.0, 0.0, 1.0])


def test_cli_eval_refuses_a_task_the_data_cannot_feed(coco: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "--model", "tiny-vit-t8", "--data", coco_spec(coco), "--tasks", "segmentation",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'segmentation' needs semantic" in err and "has boxes, labels, masks" in err


def test_registry_runs_a_new_task(toy_task: str, ade: Path, coco: dict[str, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture) -> None:
    assert _eval(ade_spec(ade), tmp_path / "toy.json", "--tasks", toy_task) == 0
    res = json.loads((tmp_path / "toy.json").read_text())
    assert res["tasks"][toy_task] == {"labelled_pixels": [W * 40, W * 40], "classes": ADE_CLASSES}
    assert f"### {toy_task}\n\nlabelled pixels per image: [{W * 40}, {W * 40}]" in capsys.readouterr().out
    assert [t.name for t in plan_tasks(ade_spec(ade), "all").tasks] == ["segmentation", toy_task]
    assert main(["eval", "--model", "tiny-vit-t8", "--data", coco_spec(coco), "--tasks", toy_task,
                 "--device", "cpu"]) == 2
    assert f"'{toy_task}' needs semantic" in capsys.readouterr().err
    with pytest.raises(ValueError, match="already registered"):
        register_task(toy_task, needs={"semantic"})(lambda ctx, reader, options: ({}, 0))
    # its own options, declared at registration, are set by --task-arg and checked against that declaration
    assert _eval(ade_spec(ade), tmp_path / "toy2.json", "--tasks", toy_task, "--task-arg", f"{toy_task}.scale=2") == 0
    assert json.loads((tmp_path / "toy2.json").read_text())["tasks"][toy_task]["labelled_pixels"] == [W * 80] * 2
    capsys.readouterr()
    assert _eval(ade_spec(ade), tmp_path / "toy3.json", "--tasks", toy_task, "--task-arg", f"{toy_task}.scale=0") == 2
    assert capsys.readouterr().err.strip().splitlines() == \
        [f"clipdense eval: error: --task-arg {toy_task}.scale 0: expected a factor >= 1"]
