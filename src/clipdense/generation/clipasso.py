"""CLIPasso (Vinker et al. 2022): a photo → a sketch of N black strokes, CLIP as the perceptual loss.

As in the paper: each stroke is one cubic Bézier of fixed width and black ink; only control points move (Adam,
rate 1.0 in 224 px pixels). The loss, over augmented views shared by sketch and photo (random perspective,
random resized crop at 0.8 of the area, square), is
``sum over blocks l of mean((F_l(sketch) - F_l(photo))^2) + w (1 - cos(E(sketch), E(photo)))`` with F_l the raw
token maps of intermediate blocks of the image tower (``dense_forward``'s ``layers``) and E the final embedding
(w = 0.1). Strokes start where the photo is salient: the paper samples start points from a ViT relevance map;
here the map is clipdense's own dense relevance, cos(patch feature, image embedding) under a dense mode, softened
with temperature 0.3 and sampled without replacement. The best of a few seeds (lowest loss on the unaugmented
pair) is kept; abstraction is the stroke count. The paper removes photo backgrounds (U2-Net); offline, the default
``background="relevance"`` paints white where the relevance map is low. Measured here: with textured world
backgrounds kept, black strokes only make the sketch less like the photo and they shrink to dots.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ConfigError
from ..models import Bundle, dense_forward, tower_facts
from .guidance import Augmentations, ClipGuide, augment, resize
from .optimise import OptimiserGroups, run_steps
from .raster import Drawing, VectorPath, render

PAPER_CANVAS = 224
#: CLIPasso's views: a perspective warp, then a square crop of 0.8 of the area
SKETCH_AUGMENTATIONS = Augmentations(count=4, distortion=0.5, crop_scale=(0.8, 0.8), crop_ratio=(1.0, 1.0))
INITS = ("saliency", "random")
BACKGROUNDS = ("keep", "relevance")


@dataclass
class SketchOptions:
    """CLIPasso's settings; ``layers`` None = the paper's blocks 2 and 3 of 12, at the same depth of any tower."""

    strokes: int = 16
    steps: int = 200
    canvas: int = 128
    layers: tuple[int, ...] | None = None
    semantic_weight: float = 0.1
    augment: Augmentations = field(default_factory=lambda: SKETCH_AUGMENTATIONS)
    width: float = 1.5
    lr_points: float = 1.0
    init: str = "saliency"
    temperature: float = 0.3
    saliency_mode: str = "maskclip"
    #: "keep" the photo as it is, or "relevance": paint the background white where the relevance map is below
    #: ``mask_threshold`` (the paper removes backgrounds with U2-Net, whose weights cannot be had offline)
    background: str = "relevance"
    mask_threshold: float = 0.5
    radius: float = 0.05
    seeds: int = 2
    samples: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("strokes", "steps", "canvas", "seeds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected a positive count, got {getattr(self, name)}")
        if self.background not in BACKGROUNDS:
            raise ConfigError(f"background {self.background!r}: expected one of {', '.join(BACKGROUNDS)}")
        if self.init not in INITS:
            raise ConfigError(f"init {self.init!r}: expected one of {', '.join(INITS)}")
        if self.temperature <= 0 or self.width <= 0:
            raise ConfigError("temperature and width: expected positive numbers")


def paper_layers(depth: int) -> tuple[int, ...]:
    """CLIPasso's ViT-B/32 blocks 2 and 3 (of 12) at the same relative depth of a ``depth``-block tower."""
    return tuple(sorted({min(depth - 1, round(k * depth / 12)) for k in (2, 3)}))


def photo_tensor(photo: Image.Image | torch.Tensor, canvas: int) -> torch.Tensor:
    """(3, canvas, canvas) in [0, 1]: the photo's centre square, resized (a tensor is taken as (3, H, W) in [0, 1])."""
    if isinstance(photo, torch.Tensor):
        image = photo
    else:
        image = torch.from_numpy(np.asarray(photo.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ConfigError(f"photo: expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
    side = min(image.shape[-2:])
    top, left = (image.shape[-2] - side) // 2, (image.shape[-1] - side) // 2
    return resize(image[None, :, top:top + side, left:left + side].float(), (canvas, canvas))[0].clamp(0, 1)


class PerceptualLoss:
    """CLIPasso's loss between pictures: block-feature L2 over ``layers`` + ``weight`` (1 - cos) of embeddings."""

    def __init__(self, guide: ClipGuide, layers: tuple[int, ...], weight: float) -> None:
        self.guide, self.layers, self.weight = guide, layers, weight

    def features(self, pictures: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        out = dense_forward(self.guide.model, self.guide.normalise(pictures), "vanilla", self.layers)
        return out.layers, F.normalize(out.image_embed, dim=-1)

    def __call__(self, sketch_views: torch.Tensor, photo_views: torch.Tensor) -> torch.Tensor:
        sketch_maps, sketch_embed = self.features(sketch_views)
        with torch.no_grad():
            photo_maps, photo_embed = self.features(photo_views)
        geometric = sum(((s - p) ** 2).mean() for s, p in zip(sketch_maps, photo_maps))
        semantic = (1.0 - (sketch_embed * photo_embed).sum(-1)).mean()
        return geometric + self.weight * semantic


@torch.no_grad()
def saliency_map(guide: ClipGuide, photo: torch.Tensor, mode: str = "maskclip") -> torch.Tensor:
    """(H, W) relevance in [0, 1] of the photo (3, H, W): cos(patch feature, image embedding), upsampled."""
    out = dense_forward(guide.model, guide.normalise(resize(photo[None], guide.size)), mode)
    relevance = (F.normalize(out.dense, dim=1) * F.normalize(out.image_embed, dim=-1)[:, :, None, None]).sum(1)
    relevance = F.interpolate(relevance[None], size=photo.shape[-2:], mode="bicubic", align_corners=False)[0, 0]
    low, high = relevance.min(), relevance.max()
    return (relevance - low) / (high - low).clamp_min(1e-8)


def mask_background(photo: torch.Tensor, relevance: torch.Tensor, threshold: float) -> torch.Tensor:
    """The photo (3, H, W) with white where ``relevance`` (H, W in [0, 1]) is below ``threshold`` (a one-unit
    ramp of width 0.1 around it, so the edge is soft)."""
    keep = ((relevance - threshold) / 0.1 + 0.5).clamp(0.0, 1.0)
    return photo * keep + (1.0 - keep)


def start_points(saliency: torch.Tensor | None, count: int, canvas: int, temperature: float,
                 generator: torch.Generator) -> torch.Tensor:
    """(count, 2) stroke starts (pixel centres): drawn without replacement from softmax(saliency / T), or
    uniformly over the canvas when ``saliency`` is None."""
    if saliency is None:
        return torch.rand(count, 2, generator=generator) * canvas
    weights = torch.softmax(saliency.flatten().cpu().double() / temperature, 0)
    index = torch.multinomial(weights, count, replacement=False, generator=generator)
    rows, cols = index // saliency.shape[1], index % saliency.shape[1]
    return torch.stack([cols, rows], dim=1).float() + 0.5


def init_strokes(starts: torch.Tensor, options: SketchOptions, generator: torch.Generator, ink: float = 1.0
                 ) -> list[VectorPath]:
    """One black cubic per start: its other three points within ``radius`` (fraction of the canvas) of it;
    ``width`` px of the CLIP's input (the paper's 1.5 px at its CLIP's 224 px), i.e. ``width * ink`` canvas px."""
    width = torch.tensor(options.width * ink)
    paths = []
    for start in starts:
        offsets = (torch.rand(3, 2, generator=generator) - 0.5) * 2 * options.radius * options.canvas
        points = torch.cat([start[None], start + offsets])
        paths.append(VectorPath(points, width.clone(), torch.tensor([0.0, 0.0, 0.0, 1.0])))
    return paths


def _one_seed(guide: ClipGuide, loss: PerceptualLoss, photo: torch.Tensor, saliency: torch.Tensor | None,
              options: SketchOptions, on_step: Callable[[int, float], None] | None) -> tuple[Drawing, float]:
    generator = torch.Generator().manual_seed(options.seed)
    starts = start_points(saliency, options.strokes, options.canvas, options.temperature, generator)
    device = photo.device
    paths = [VectorPath(p.points.to(device).requires_grad_(True), p.width.to(device), p.stroke.to(device))
             for p in init_strokes(starts, options, generator, options.canvas / guide.size[1])]
    drawing = Drawing(paths, (options.canvas, options.canvas), meta={"method": "clipasso"})
    scale = options.canvas / PAPER_CANVAS
    groups = OptimiserGroups.adam({"points": ([p.points for p in paths], options.lr_points * scale)},
                                  total=options.steps)

    def step(_: int) -> torch.Tensor:
        both = torch.stack([render(drawing, options.samples), photo])
        views = augment(both, guide.size, options.augment, generator)   # the same warp for sketch and photo
        return loss(views[0::2], views[1::2])

    run_steps(step, groups, options.steps, on_step=on_step)
    with torch.no_grad():
        final = float(loss(resize(render(drawing, options.samples)[None], guide.size), resize(photo[None], guide.size)))
    return drawing.detached(), final


def sketch(bundle: Bundle, photo: Image.Image | torch.Tensor, strokes: int = 16, steps: int = 200,
           options: SketchOptions | None = None, on_step: Callable[[int, int, float], None] | None = None
           ) -> Drawing:
    """A CLIPasso sketch of ``photo`` in ``strokes`` strokes: the best of ``options.seeds`` runs (seed, seed+1, ...).
    ``on_step(seed_index, step, loss)`` reports progress. The kept run's loss is in ``drawing.meta['loss']``."""
    options = replace(options or SketchOptions(), strokes=strokes, steps=steps)
    guide = ClipGuide(bundle)
    layers = options.layers if options.layers is not None else paper_layers(tower_facts(bundle.model).num_blocks)
    loss = PerceptualLoss(guide, tuple(layers), options.semantic_weight)
    picture = photo_tensor(photo, options.canvas).to(bundle.device)
    relevance = saliency_map(guide, picture, options.saliency_mode)
    if options.background == "relevance":
        picture = mask_background(picture, relevance, options.mask_threshold)
    saliency = relevance if options.init == "saliency" else None
    best: tuple[Drawing, float] | None = None
    for index in range(options.seeds):
        report = (lambda step, value, i=index: on_step(i, step, value)) if on_step else None
        result = _one_seed(guide, loss, picture, saliency, replace(options, seed=options.seed + index), report)
        if best is None or result[1] < best[1]:
            best = result
    drawing, final = best
    drawing.meta.update(loss=f"{final:.6f}", strokes=str(strokes), layers=",".join(map(str, layers)))
    return drawing
