"""CLIPDraw and CLIPasso: the papers' losses and schedules by hand, the guidance pieces, and the commands."""
from __future__ import annotations

import re

import torch
import pytest

from clipdense.cli.main import main
from clipdense.errors import ConfigError
from clipdense.generation import Drawing, read_svg, render
from clipdense.generation.clipasso import PerceptualLoss, SketchOptions, paper_layers, photo_tensor, start_points
from clipdense.generation.clipdraw import DrawOptions, clipdraw, init_paths
from clipdense.generation.guidance import Augmentations, ClipGuide, augment, resize
from clipdense.generation.optimise import OptimiserGroups
from clipdense.models import dense_forward


def test_augmentations_identity_case_and_seeded():
    pictures = torch.rand(2, 3, 32, 32)
    # no warp and a crop of the whole square: every view is the picture resized
    plain = Augmentations(count=3, distortion=0.0, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    views = augment(pictures, (16, 16), plain, torch.Generator().manual_seed(0))
    assert views.shape == (6, 3, 16, 16)
    assert torch.allclose(views, resize(pictures, (16, 16)).repeat(3, 1, 1, 1))
    paper = Augmentations()
    a = augment(pictures, (16, 16), paper, torch.Generator().manual_seed(5))
    b = augment(pictures, (16, 16), paper, torch.Generator().manual_seed(5))
    c = augment(pictures, (16, 16), paper, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the same warp for every picture of the batch (CLIPasso warps sketch and photo alike)
    same = augment(pictures[:1].repeat(2, 1, 1, 1), (16, 16), paper, torch.Generator().manual_seed(1))
    assert torch.equal(same[0::2], same[1::2])
    # gradients reach the picture through warp and crop
    picture = pictures[:1].clone().requires_grad_(True)
    augment(picture, (16, 16), paper, torch.Generator().manual_seed(2)).sum().backward()
    assert picture.grad is not None and picture.grad.abs().sum() > 0


def test_optimiser_schedule_is_the_papers():
    points, width = torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)
    groups = OptimiserGroups.adam({"points": ([points], 1.0), "widths": ([width], 0.1)}, total=100,
                                  schedule={"points": ((0.5, 0.4), (0.75, 0.1))})
    rates = {}
    for step in (0, 49, 50, 74, 75, 99):
        groups.set_step(step)
        rates[step] = [g["lr"] for g in groups.optimiser.param_groups]
    assert rates == {0: [1.0, 0.1], 49: [1.0, 0.1], 50: [0.4, 0.1], 74: [0.4, 0.1], 75: [0.1, 0.1], 99: [0.1, 0.1]}


def test_clipdraw_init_is_the_papers():
    options = DrawOptions(strokes=50, canvas=100)
    paths = init_paths(options, torch.Generator().manual_seed(0))
    assert len(paths) == 50
    segments = {(p.points.shape[0] - 1) // 3 for p in paths}
    assert segments <= {1, 2, 3} and len(segments) > 1
    for path in paths:
        # each point is the previous one moved by at most radius/2 per axis (radius 0.1 of the canvas)
        steps = (path.points[1:] - path.points[:-1]).abs()
        assert float(steps.max()) <= 0.05 * 100 + 1e-4 and float(path.width) == 1.0
        assert 0 <= float(path.stroke.min()) and float(path.stroke.max()) <= 1
    with pytest.raises(ConfigError, match="strokes"):
        DrawOptions(strokes=0)


def test_guide_leaves_the_models_weights_without_grad(tiny_bundle):
    _, losses = clipdraw(tiny_bundle, "a red circle", DrawOptions(strokes=3, steps=2, canvas=32))
    assert len(losses) == 2
    assert all(p.grad is None for p in tiny_bundle.model.parameters())
    with pytest.raises(ConfigError, match="empty prompt"):
        ClipGuide(tiny_bundle).embed_prompts(["  "])


def test_clipasso_loss_is_zero_for_the_photo_itself_and_the_papers_sum(tiny_bundle):
    guide = ClipGuide(tiny_bundle)
    photo = photo_tensor(torch.rand(3, 80, 96), 64)
    assert photo.shape == (3, 64, 64)
    loss = PerceptualLoss(guide, (0, 1), weight=0.1)
    views = augment(torch.stack([photo, photo]), guide.size, SketchOptions().augment, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float(loss(views[0::2], views[1::2])) == pytest.approx(0.0, abs=1e-6)
    # for another picture it is the block-feature MSE over blocks 0 and 1 + 0.1 (1 - cos) of the embeddings
    other = torch.rand(1, 3, 64, 64)
    a = dense_forward(tiny_bundle.model, guide.normalise(other), "vanilla", (0, 1))
    b = dense_forward(tiny_bundle.model, guide.normalise(photo[None]), "vanilla", (0, 1))
    cos = torch.nn.functional.cosine_similarity(a.image_embed, b.image_embed)
    expected = sum(((x - y) ** 2).mean() for x, y in zip(a.layers, b.layers)) + 0.1 * (1 - cos).mean()
    assert float(loss(other, photo[None])) == pytest.approx(float(expected), rel=1e-5)
    assert float(expected) > 0.01


def test_clipasso_layers_and_saliency_starts():
    assert paper_layers(12) == (2, 3) and paper_layers(3) == (0, 1) and paper_layers(24) == (4, 6)
    saliency = torch.zeros(10, 12)
    saliency[5, 7] = 1.0
    starts = start_points(saliency, 1, 12, temperature=0.01, generator=torch.Generator().manual_seed(0))
    assert starts.tolist() == [[7.5, 5.5]]            # (x, y) = (column + 0.5, row + 0.5) of the hot pixel
    spread = start_points(saliency, 20, 12, temperature=0.3, generator=torch.Generator().manual_seed(0))
    assert len({tuple(p) for p in spread.tolist()}) == 20   # drawn without replacement
    with pytest.raises(ConfigError, match="init"):
        SketchOptions(init="edges")


def test_relevance_background_mask_by_hand():
    from clipdense.generation.clipasso import mask_background

    photo = torch.zeros(3, 1, 4)
    relevance = torch.tensor([[0.0, 0.5, 0.55, 0.9]])
    # ramp of width 0.1 centred on the threshold 0.5: keep 0, 0.5, 1, 1 -> white, mid grey, photo, photo
    masked = mask_background(photo, relevance, 0.5)
    assert torch.allclose(masked[0, 0], torch.tensor([1.0, 0.5, 0.0, 0.0]))


@pytest.mark.parametrize("argv, message", [
    (["draw", "", "--out", "x.svg"], "empty prompt"),
    (["draw", "a red circle", "--strokes", "0"], "--strokes"),
    (["draw", "a red circle", "--steps", "0"], "--steps"),
    (["draw", "a red circle", "--canvas", "0"], "--canvas"),
    (["draw", "a red circle", "--augmentations", "99"], "--augmentations"),
    (["draw", "a red circle", "--seed", "-1"], "--seed"),
    (["draw", "a red circle", "--out", "x.png"], ".svg"),
    (["sketch", "missing.png"], "missing.png"),
    (["sketch", "p.png", "--strokes", "0"], "--strokes"),
    (["sketch", "p.png", "--steps", "-3"], "--steps"),
    (["sketch", "p.png", "--seeds", "0"], "--seeds"),
    (["sketch", "p.png", "--init", "edges"], "--init"),
    (["sketch", "p.png", "--background", "blur"], "--background"),
    (["sketch", "p.png", "--canvas", "0"], "--canvas"),
    (["sketch", "p.png", "--seed", "x"], "--seed"),
    (["sketch", "p.png", "--layers", "a,b"], "--layers"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.png").write_bytes(b"not a picture")
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_unreadable_photo_and_bad_layers_are_one_line(capsys, tmp_path):
    (tmp_path / "p.png").write_bytes(b"not a picture")
    assert main(["sketch", str(tmp_path / "p.png")]) == 2
    assert "p.png" in capsys.readouterr().err
    photo = tmp_path / "ok.png"
    from clipdense.generation.svg import to_image
    to_image(torch.rand(3, 32, 32)).save(photo)
    assert main(["sketch", str(photo), "--layers", "7", "--model", "tiny-vit-t8"]) == 2
    assert "--layers 7" in capsys.readouterr().err


@pytest.mark.slow
def test_clipdraw_raises_the_clip_score_over_its_initialisation():
    import clipdense as cd

    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    guide, prompt = ClipGuide(bundle), "a red circle"
    still = DrawOptions(strokes=16, steps=1, canvas=64, lr_points=0.0, lr_width=0.0, lr_colour=0.0, seed=0)
    start, _ = clipdraw(bundle, prompt, still)
    drawn, losses = clipdraw(bundle, prompt, DrawOptions(strokes=16, steps=30, canvas=64, seed=0))
    before = float(guide.score(render(start)[None], [prompt]))
    after = float(guide.score(render(drawn)[None], [prompt]))
    assert after > before + 0.05, (before, after)
    assert sum(losses[-5:]) < sum(losses[:5])


@pytest.mark.slow
def test_draw_and_sketch_commands_write_svg_and_png(tmp_path):
    out = tmp_path / "d.svg"
    assert main(["draw", "a blue star", "--strokes", "4", "--steps", "3", "--canvas", "32", "--out", str(out)]) == 0
    drawing = read_svg(out)
    assert isinstance(drawing, Drawing) and len(drawing.paths) == 4 and drawing.meta["prompt"] == "a blue star"
    assert (tmp_path / "d.png").exists()
    from clipdense.generation.svg import to_image
    to_image(torch.rand(3, 40, 40)).save(tmp_path / "photo.png")
    sk = tmp_path / "s.svg"
    assert main(["sketch", str(tmp_path / "photo.png"), "--strokes", "3", "--steps", "2", "--seeds", "2",
                 "--canvas", "32", "--out", str(sk)]) == 0
    assert len(read_svg(sk).paths) == 3 and float(read_svg(sk).meta["loss"]) > 0


def _bench():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "generation.py"
    spec = importlib.util.spec_from_file_location("bench_generation", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_generation"] = module   # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_bench_clip_score_and_r_precision_by_hand():
    class Toy:   # a judge whose scores are given: rows = pictures made for prompts 0, 1, 2
        def score(self, pictures, prompts):
            return torch.tensor([[0.9, 0.1, 0.2], [0.5, 0.4, 0.1], [0.0, 0.3, 0.6]])

    result = _bench().prompt_matrix(Toy(), torch.zeros(3, 3, 8, 8), ("a", "b", "c"))
    # own-prompt scores 0.9, 0.4, 0.6 -> mean 0.6333; picture 1 ranks prompt 0 first -> R-precision 2/3
    assert result["clip_score"] == pytest.approx((0.9 + 0.4 + 0.6) / 3)
    assert result["r_precision"] == pytest.approx(2 / 3)


def test_bench_grounded_check_by_hand():
    bench = _bench()
    things = ["red circle", "blue star", "house"]          # labels 0..2 things, 3 = a stuff class
    assert bench.prompt_objects("a red circle above a blue star", things) == (["red circle", "blue star"], "above")
    assert bench.prompt_objects("a house", things) == (["house"], None)
    single = torch.full((4, 4), 3)
    single[0, :2] = 2                      # 2 px of house, 0 px of anything else thing-like: found
    above = torch.full((4, 4), 3)
    above[0, :] = 0                        # red circle on the top row,
    above[3, 1:3] = 1                      # blue star at the bottom: both top-2 things, relation holds
    below = above.flip(0)                  # the same objects the other way up: found, relation fails
    missing = torch.zeros(4, 4, dtype=torch.long)          # only red circle: the star is not found
    labels = torch.stack([single, above, below, missing])
    prompts = ("a house", "a red circle above a blue star", "a red circle above a blue star",
               "a red circle above a blue star")
    result = bench.grounded_labels(labels, prompts, things, 4)
    assert result == {"found": 3 / 4, "relation_holds": 1 / 3}
    result = bench.grounded_labels(labels[2:3], ("a blue star above a red circle",), things, 4)
    assert result == {"found": 1.0, "relation_holds": 1.0}


@pytest.mark.slow
def test_bench_smoke_writes_rows_and_gallery(tmp_path):
    import json

    out, picture = tmp_path / "g.json", tmp_path / "g.png"
    threads = torch.get_num_threads()        # the bench pins one thread for itself; the suite's count comes back
    try:
        assert _bench().main(["--smoke", "--work", str(tmp_path / "w"), "--out", str(out),
                              "--gallery", str(picture)]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads(out.read_text())
    assert [row["steps"] for row in report["clipdraw"]] == [0, 2, 2]
    assert len(report["clipasso"]) == 3 and picture.exists()
    assert [row["steps"] for row in report["vqgan_clip"]] == [0, 2]
    assert all(0.0 <= row["grounded"]["found"] <= 1.0 for row in report["clipdraw"] + report["vqgan_clip"])
    for row in report["clipdraw"]:
        assert 0.0 <= row["judge"]["r_precision"] <= 1.0 and -1.0 <= row["judge"]["clip_score"] <= 1.0


@pytest.mark.slow
def test_demo_draw_writes_a_report_with_its_pictures(tmp_path, monkeypatch):
    from clipdense.demo import draw as demo

    monkeypatch.setattr(demo, "DRAW", dict(strokes=3, steps=2, canvas=32))
    monkeypatch.setattr(demo, "SKETCH", dict(strokes=2, steps=2))
    monkeypatch.setattr(demo, "VQGAN", dict(steps=2, canvas=32))
    assert main(["demo", "draw", "--out", str(tmp_path / "d")]) == 0
    report = (tmp_path / "d" / "report.md").read_text()
    pictures = re.findall(r"!\[\]\(([^)]+)\)", report)
    assert len(pictures) == 2 * len(demo.PROMPTS) + 2 * len(demo.VQGAN_PROMPTS) + 3 * len(demo.SKETCH_CLASSES)
    assert read_svg(tmp_path / "d" / "vqgan-a-red-circle.svg").raster.shape == (3, 32, 32)
    assert all((tmp_path / "d" / name).exists() for name in pictures)
    assert read_svg(tmp_path / "d" / "a-red-circle.svg").meta["prompt"] == "a red circle"
