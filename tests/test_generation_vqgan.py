"""VQGAN (models.vqgan, objectives/vqgan.py) and VQGAN-CLIP (generation/vqgan.py): hand-checked losses, the
one-optimiser GAN's gradients, the shipped model's hash and reconstruction error, the raster SVG round trip."""
from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from clipdense.cli.main import main
from clipdense.errors import ConfigError
from clipdense.generation import Drawing, read_svg, render, write_svg
from clipdense.generation.vqgan import (SHIPPED_VQGAN, VQGANClipOptions, load_vqgan, quantise_straight_through,
                                        spherical_distance, vqgan_clip)
from clipdense.models import dense_forward
from clipdense.models.vqgan import VQGAN, VQGANConfig, VectorQuantizer
from clipdense.objectives import build_objective
from clipdense.objectives.vqgan import adaptive_weight, hinge_d_loss

TINY = {"channels": 8, "channel_mult": [1, 2], "codebook_size": 8, "code_dim": 4, "size": 16, "disc_channels": 8,
        "disc_layers": 2, "perceptual_blocks": [0], "restart_every": 0}


def test_quantiser_by_hand():
    quantiser = VectorQuantizer(3, 2, beta=0.25)
    with torch.no_grad():
        quantiser.embedding.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 0.0]]))
    z = torch.tensor([[0.2, 0.1], [0.9, 1.3], [2.0, 0.2]]).T.reshape(1, 2, 1, 3).requires_grad_(True)
    out = quantiser(z)
    assert out.codes.tolist() == [[[0, 1, 2]]]
    # ||sg[z] - e||^2 + beta ||z - sg[e]||^2, each a mean over the 6 numbers
    squared = (0.2 ** 2 + 0.1 ** 2 + 0.1 ** 2 + 0.3 ** 2 + 1.0 ** 2 + 0.2 ** 2) / 6
    assert float(out.loss.detach()) == pytest.approx(1.25 * squared, rel=1e-5)
    assert torch.allclose(out.z_q, torch.tensor([[0.0, 1.0, 3.0], [0.0, 1.0, 0.0]]).reshape(1, 2, 1, 3))
    (grad,) = torch.autograd.grad(out.z_q.sum(), z)      # straight-through: the identity
    assert torch.equal(grad, torch.ones_like(z))


def test_codebook_use_perplexity_by_hand():
    model = VQGAN(VQGANConfig(channels=8, channel_mult=(1, 2), codebook_size=8, code_dim=4))
    use = model.codebook_use(torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    assert use["codes_used"] == 4 and use["perplexity"] == pytest.approx(4.0)
    assert model.codebook_use(torch.tensor([5, 5, 5]))["perplexity"] == pytest.approx(1.0)


def test_hinge_and_adaptive_weight_by_hand():
    loss = hinge_d_loss(torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0]))
    assert float(loss) == pytest.approx(0.5 * (0.25 + 0.5))
    last = torch.ones(2, 2, requires_grad=True)
    weight = adaptive_weight(3 * last.sum(), last.sum(), last)     # grads 3 * ones and ones: norms 6 and 2
    assert float(weight) == pytest.approx(6.0 / (2.0 + 1e-4))


def test_spherical_distance_by_hand():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert float(spherical_distance(a, b)) == pytest.approx(2 * (math.pi / 4) ** 2)
    assert float(spherical_distance(a, a)) == 0.0


def test_each_network_gets_only_its_own_losss_gradient(bundle):
    objective = build_objective("vqgan", bundle, {**TINY, "disc_start": 0, "adaptive": False, "disc_weight": 0.5})
    objective.codebook_ready.fill_(True)
    x = torch.rand(2, 3, 16, 16)
    objective({"image": x})["loss"].backward()
    disc_grads = [p.grad.clone() for p in objective.discriminator.parameters()]
    vq_grads = [p.grad.clone() for p in objective.vqgan.parameters()]
    objective.zero_grad()
    # the discriminator: the hinge loss on real and sg[reconstruction] alone
    recon, quantised = objective.vqgan(x)
    hinge_d_loss(objective.discriminator(x), objective.discriminator(recon.detach())).backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(disc_grads, objective.discriminator.parameters()))
    # the VQGAN: nll + codebook + w_d * (-mean D(x̂)), with the discriminator held still
    objective.zero_grad()
    recon, quantised = objective.vqgan(x)
    nll = (x - recon).abs().mean() + objective.perceptual(x, recon)
    (nll + quantised.loss - 0.5 * objective.discriminator(recon).mean()).backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(vq_grads, objective.vqgan.parameters()))


def test_clip_perceptual_term_is_lpips_form_on_clip_blocks(bundle):
    objective = build_objective("vqgan", bundle, TINY)
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    assert float(objective.perceptual(x, x)) == 0.0
    norm = objective.perceptual
    fx = dense_forward(bundle.model, (x - norm.mean) / norm.std, "vanilla", (0,)).layers[0]
    fy = dense_forward(bundle.model, (y - norm.mean) / norm.std, "vanilla", (0,)).layers[0]
    unit = lambda f: f / f.norm(dim=1, keepdim=True)   # noqa: E731
    expected = ((unit(fx) - unit(fy)) ** 2).sum(1).mean()
    assert float(objective.perceptual(x, y)) == pytest.approx(float(expected), rel=1e-4)


def test_discriminator_waits_for_disc_start_and_codebook_starts_from_latents(bundle):
    objective = build_objective("vqgan", bundle, {**TINY, "disc_start": 3})
    out = objective({"image": torch.rand(2, 3, 16, 16)})
    assert "gan" not in out and bool(objective.codebook_ready)
    objective.after_step(3)
    assert "gan" in objective({"image": torch.rand(2, 3, 16, 16)})
    with pytest.raises(ConfigError, match="size=17"):
        build_objective("vqgan", bundle, {**TINY, "size": 17})
    with pytest.raises(ConfigError, match="perceptual_blocks"):
        build_objective("vqgan", bundle, {**TINY, "perceptual_blocks": [9]})


def test_objective_args_from_the_command_line_become_numbers():
    from clipdense.objectives import objective_options

    options = objective_options("vqgan", {"channel_mult": "1,2", "perceptual_blocks": "0", "crop_scale": "0.5,1"})
    assert (options.channel_mult, options.perceptual_blocks, options.crop_scale) == ((1, 2), (0,), (0.5, 1.0))
    with pytest.raises(ConfigError, match="channel_mult"):
        objective_options("vqgan", {"channel_mult": "a,b"})
    with pytest.raises(ConfigError, match="crop_scale"):
        objective_options("vqgan", {"crop_scale": "0.5"})


def test_raster_drawing_svg_round_trip(tmp_path):
    picture = torch.rand(3, 12, 16)
    drawing = Drawing([], (12, 16), meta={"method": "vqgan"}, raster=picture)
    back = read_svg(write_svg(drawing, tmp_path / "r.svg"))
    assert back.raster is not None and back.meta == {"method": "vqgan"}
    assert (render(back) - picture).abs().max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ConfigError, match="raster"):
        Drawing([], (12, 12), raster=picture)


def test_draw_method_rules(tiny_bundle):
    import clipdense as cd

    with pytest.raises(ConfigError, match="strokes"):
        cd.draw(tiny_bundle, "a red circle", strokes=8, method="vqgan")
    with pytest.raises(ConfigError, match="method"):
        cd.draw(tiny_bundle, "a red circle", method="diffusion")


@pytest.mark.parametrize("argv,message", [
    (["draw", "a red circle", "--method", "vqgan", "--strokes", "8"], "--strokes"),
    (["draw", "a red circle", "--vqgan", "v.safetensors"], "--vqgan"),
    (["draw", "a red circle", "--method", "vqgan", "--vqgan", "missing.safetensors"], "missing.safetensors"),
    (["draw", "a red circle", "--method", "gan"], "--method"),
])
def test_vqgan_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


# ---------------------------------------------------------------- the shipped VQGAN

RECORD = SHIPPED_VQGAN.with_suffix(".json")


def test_shipped_vqgan_matches_its_hash_and_card():
    record = json.loads(RECORD.read_text())
    assert hashlib.sha256(SHIPPED_VQGAN.read_bytes()).hexdigest() == record["sha256"]
    assert SHIPPED_VQGAN.with_suffix(".md").is_file()
    model = load_vqgan()
    assert model.config.to_dict() == record["config"]
    assert record["card"]["codes_used"] >= 0.25 * record["config"]["codebook_size"]


def test_shipped_vqgan_reconstructs_world_images(tiny_world):
    """Its error on the shared tiny world's val scenes (another seed than it trained on) stays near its card's."""
    from clipdense.generation.clipasso import photo_tensor
    from PIL import Image

    record = json.loads(RECORD.read_text())
    files = sorted((tiny_world / "val" / "images").glob("*.png"))[:6]
    x = torch.stack([photo_tensor(Image.open(f).convert("RGB"), 64) for f in files])
    model = load_vqgan()
    with torch.no_grad():
        recon, _ = model(x)
    l1 = float((recon.clamp(0, 1) - x).abs().mean())
    assert l1 < 1.5 * record["card"]["l1"] and l1 < 0.1, l1


@pytest.mark.slow
def test_shipped_vqgan_card_reproduces(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("ship_vqgan", Path(__file__).parents[1] / "scripts" / "ship_vqgan.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    record = json.loads(RECORD.read_text())
    card = ship.card_scores(load_vqgan(), ship.card_world(tmp_path / "world"))
    assert card["l1"] == pytest.approx(record["card"]["l1"], abs=1e-3)
    assert card["codes_used"] == record["card"]["codes_used"]


@pytest.mark.slow
def test_vqgan_clip_raises_the_clip_score_over_its_start():
    import clipdense as cd
    from clipdense.generation.guidance import ClipGuide

    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    guide, prompt, vqgan = ClipGuide(bundle), "a red circle", load_vqgan()
    from clipdense.generation.vqgan import start_latent

    with torch.no_grad():
        start = vqgan.decode(start_latent(vqgan, 64, torch.Generator().manual_seed(0))).clamp(0, 1)
    drawing, losses = vqgan_clip(bundle, prompt, VQGANClipOptions(steps=40, seed=0), vqgan=vqgan)
    before = float(guide.score(start, [prompt]))
    after = float(guide.score(render(drawing)[None], [prompt]))
    assert after > before + 0.05, (before, after)
    assert sum(losses[-5:]) < sum(losses[:5])


@pytest.mark.slow
def test_vqgan_trains_through_the_engine_and_loads_without_its_clip(tiny_world, tmp_path):
    from clipdense.heads import read_head_info

    run = tmp_path / "run"
    args = [f"{key}={','.join(map(str, value)) if isinstance(value, list) else value}" for key, value in
            {**TINY, "size": 32, "disc_start": 2}.items()]
    argv = ["train", "--objective", "vqgan", "--model", "tiny-vit-t8", "--data", str(tiny_world), "--out", str(run),
            "--steps", "3", "--batch-size", "2", "--device", "cpu", "--num-workers", "0", "--log-every", "1"]
    assert main(argv + [part for arg in args for part in ("--objective-arg", arg)]) == 0
    info = read_head_info(run)
    assert info.kind == "generator/vqgan" and info.backbone.name == "tiny-vit-t8"
    model = load_vqgan(run)                      # no CLIP needed to read it
    assert model.config.codebook_size == TINY["codebook_size"] and "discriminator" not in str(model)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "gan" not in logged[0] and "gan" in logged[-1]       # the discriminator starts after disc_start steps


@pytest.mark.slow
def test_draw_command_with_vqgan_writes_a_raster_svg_and_png(tmp_path, capsys):
    out = tmp_path / "v.svg"
    assert main(["draw", "a red circle", "--method", "vqgan", "--steps", "3", "--out", str(out),
                 "--model", "tiny-vit-t8", "--pretrained", "synthworld"]) == 0
    drawing = read_svg(out)
    assert drawing.paths == [] and drawing.raster.shape == (3, 64, 64) and drawing.meta["method"] == "vqgan"
    assert out.with_suffix(".png").is_file() and "VQGAN picture, 64x64 px" in capsys.readouterr().out
