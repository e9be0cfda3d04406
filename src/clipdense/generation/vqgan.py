"""VQGAN-CLIP (Crowson et al. 2022): a VQGAN's latent optimised so that CLIP finds the prompt in its picture.

As in the method's reference notebook: the latent z (before quantisation, ``(1, D, h, w)``) starts as the codes of
random tokens; each step quantises z to its nearest codes with a straight-through gradient, decodes, clamps to
[0, 1] with a pass-through gradient, takes ``cutouts`` augmented views (here CLIPDraw's random perspective + random
resized crop, from ``guidance.augment``), and minimises the spherical distance ``2 arcsin(|a - b| / 2)^2``
between each view's unit CLIP embedding and the prompt's; Adam on z, which is then clamped to the codebook's
range. The picture is a raster: the result is a ``Drawing`` with no paths and that ``raster`` (its SVG embeds
the PNG).

The VQGAN is a ``generator/vqgan`` head file (``clipdense train --objective vqgan``); the one shipped beside the
tiny CLIP's ``synthworld`` weights is the default. The file names the CLIP of its perceptual loss, but the VQGAN
never runs that CLIP, so any clipdense CLIP may guide it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ..errors import ConfigError, ModelLoadError
from ..heads import find_head_kind
from ..heads.expect import expect_head
from ..heads.vqgan import KIND
from ..models import Bundle
from ..models.registry import WEIGHTS_DIR
from ..models.vqgan import VQGAN
from ..models.weights import load_into
from .clipdraw import PictureHook, reporter
from .guidance import Augmentations, ClipGuide, augment
from .optimise import OptimiserGroups, run_steps
from .raster import Drawing

#: shipped VQGANs: ``NAME--TAG.safetensors`` beside the CLIP weights they were trained with
VQGAN_WEIGHTS_DIR = WEIGHTS_DIR / "vqgan"
SHIPPED_VQGAN = VQGAN_WEIGHTS_DIR / "tiny-vit-t8--synthworld.safetensors"


def load_vqgan(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> VQGAN:
    """The VQGAN in a ``generator/vqgan`` head file or run dir (default: the shipped one), float32, eval mode."""
    source = Path(path) if path is not None else SHIPPED_VQGAN
    if path is None and not source.is_file():
        raise ModelLoadError(f"{source}: the shipped VQGAN is missing from this install; train one with "
                             "`clipdense train --objective vqgan` and pass its run dir or head file")
    info = expect_head(source, "vqgan", "vqgan")
    kind = find_head_kind(KIND)
    assert kind is not None
    model = kind.build(info.config, None, None)
    load_into(model, load_file(str(info.path)), str(info.path))
    return model.float().to(device).eval()


@dataclass
class VQGANClipOptions:
    """VQGAN-CLIP's settings: the notebook's loss, start and clamping; sizes for a 64 px CLIP.

    Args:
        steps: Adam steps on z.
        canvas: picture side in pixels (a multiple of the VQGAN's downsampling factor).
        lr: Adam's rate on z (the notebook's 0.1), in units of the codebook's standard deviation.
        cutouts: augmented views per step (``augment.count`` is replaced by this).
        augment: the views' perspective and crop ranges.
        vqgan: a VQGAN head file or run dir (None: the shipped one).
        seed: the start tokens' and the views' seed.
    """

    steps: int = 200
    canvas: int = 64
    lr: float = 0.1
    cutouts: int = 8
    augment: Augmentations = field(default_factory=lambda: Augmentations(crop_scale=(0.5, 1.0)))
    vqgan: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "canvas"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected a positive count, got {getattr(self, name)}")
        if self.cutouts < 0 or self.lr <= 0:
            raise ConfigError(f"vqgan-clip: expected cutouts >= 0 and lr > 0, got {self.cutouts} and {self.lr}")


def spherical_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """2 arcsin(|a - b| / 2)^2 of unit vectors: the squared great-circle angle / 2 (VQGAN-CLIP's loss)."""
    return (a - b).norm(dim=-1).div(2).clamp(max=1.0).arcsin().pow(2).mul(2)


def quantise_straight_through(vqgan: VQGAN, z: torch.Tensor) -> torch.Tensor:
    """z's nearest codes in the forward pass, the identity in the backward pass."""
    return z + (vqgan.quantizer.lookup(vqgan.quantizer.nearest(z.detach())) - z).detach()


def clamp_pass_through(x: torch.Tensor) -> torch.Tensor:
    """clamp(x, 0, 1) forward, gradient 1 everywhere (the notebook's ``clamp_with_grad``)."""
    return x + (x.clamp(0.0, 1.0) - x).detach()


def start_latent(vqgan: VQGAN, side: int, generator: torch.Generator) -> torch.Tensor:
    """(1, D, h, w) codes of uniformly random tokens: the notebook's start."""
    factor = vqgan.config.downsample
    if side % factor:
        raise ConfigError(f"canvas {side}: expected a multiple of the VQGAN's downsampling factor {factor}")
    tokens = torch.randint(0, vqgan.config.codebook_size, (1, side // factor, side // factor), generator=generator)
    return vqgan.quantizer.lookup(tokens.to(vqgan.quantizer.embedding.weight.device))


def vqgan_clip(bundle: Bundle, prompt: str, options: VQGANClipOptions | None = None,
               on_step: Callable[[int, float], None] | None = None, vqgan: VQGAN | None = None,
               on_picture: PictureHook | None = None) -> tuple[Drawing, list[float]]:
    """Run VQGAN-CLIP for ``prompt``: the picture (a raster ``Drawing``) and the loss of each step
    (``on_picture`` as ``clipdraw``'s: the picture as it forms)."""
    options = options or VQGANClipOptions()
    guide = ClipGuide(bundle)
    text = guide.embed_prompts([prompt])[0]
    vqgan = vqgan or load_vqgan(options.vqgan, bundle.device)
    vqgan.requires_grad_(False)
    codebook = vqgan.quantizer.embedding.weight
    low, high = codebook.min(dim=0).values[None, :, None, None], codebook.max(dim=0).values[None, :, None, None]
    generator = torch.Generator().manual_seed(options.seed)
    z = start_latent(vqgan, options.canvas, generator).clone().requires_grad_(True)
    groups = OptimiserGroups.adam({"z": ([z], options.lr * float(codebook.std()))}, total=options.steps)
    views = Augmentations(options.cutouts, options.augment.distortion, options.augment.crop_scale,
                          options.augment.crop_ratio)

    def picture() -> torch.Tensor:
        return clamp_pass_through(vqgan.decode(quantise_straight_through(vqgan, z)))

    def step(_: int) -> torch.Tensor:
        embeds = guide.embed_images(augment(picture(), guide.size, views, generator))
        return spherical_distance(embeds, text[None]).mean()

    def clamp() -> None:
        z.copy_(torch.maximum(torch.minimum(z, high), low))

    def current() -> torch.Tensor:
        with torch.no_grad():
            return picture()[0].clamp(0.0, 1.0).float().cpu()

    losses = run_steps(step, groups, options.steps, after_step=clamp, on_step=reporter(on_step, on_picture, current))
    final = current()
    meta = {"prompt": prompt, "method": "vqgan"}
    return Drawing([], (options.canvas, options.canvas), meta=meta, raster=final), losses


__all__ = ["SHIPPED_VQGAN", "VQGANClipOptions", "load_vqgan", "spherical_distance", "start_latent", "vqgan_clip"]
