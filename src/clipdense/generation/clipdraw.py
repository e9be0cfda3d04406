"""CLIPDraw (Frans, Soros & Witkowski 2021): vector strokes optimised so that CLIP finds the prompt in them.

As in the paper: N open paths of 1-3 cubic segments each, started at a random point with the next points within a
small radius, width 1 and a random RGBA colour; each step renders the drawing, takes ``count`` augmented views
(random perspective + random resized crop), and minimises ``-cos(view, prompt)`` plus ``0.3 cos(view, negative)``
for each negative prompt, averaged over the views; Adam with separate learning rates for points (1.0),
widths (0.1) and colours (0.01), the points' rate cut to 0.4 at half the steps and 0.1 at three quarters; widths
clamped to [1, max width] and colours to [0, 1] after every step.

The paper's canvas is its CLIP's 224 px input. Sizes that shape the composition (point rate, width rate, max
width, start radius) are scaled as fractions of the canvas; the thinnest line (the start and least width, 1 px)
is kept at 1 px *of the CLIP's input*, so that a drawing on a canvas larger than the CLIP reads stays visible to it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

import torch

from ..errors import ConfigError
from ..models import Bundle
from .guidance import Augmentations, ClipGuide, augment
from .optimise import OptimiserGroups, run_steps
from .raster import Drawing, VectorPath, render

if TYPE_CHECKING:
    from .vqgan import VQGANClipOptions

#: the paper's canvas side: rates and widths below are in its pixels
PAPER_CANVAS = 224
#: CLIPDraw's negative prompts ("a badly drawn sketch", "lots of messy lines") and their weight
NEGATIVE_PROMPTS = ("A badly drawn sketch.", "Lots of messy lines.")


@dataclass
class DrawOptions:
    """CLIPDraw's settings; defaults are the paper's except strokes, steps and canvas (sized for a 64 px CLIP)."""

    strokes: int = 64
    steps: int = 200
    canvas: int = 128
    augment: Augmentations = field(default_factory=Augmentations)
    negative_prompts: tuple[str, ...] = NEGATIVE_PROMPTS
    negative_weight: float = 0.3
    lr_points: float = 1.0
    lr_width: float = 0.1
    lr_colour: float = 0.01
    max_width: float = 50.0
    segments: tuple[int, int] = (1, 3)
    radius: float = 0.1
    samples: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("strokes", "steps", "canvas", "samples"):
            if getattr(self, name) < (2 if name == "samples" else 1):
                raise ConfigError(f"{name}: expected a positive count, got {getattr(self, name)}")
        if not 1 <= self.segments[0] <= self.segments[1]:
            raise ConfigError(f"segments: expected 1 <= low <= high, got {self.segments}")


def init_paths(options: DrawOptions, generator: torch.Generator, width: float = 1.0) -> list[VectorPath]:
    """The paper's random start: each path a short random walk of 1-3 segments, ``width`` px, random RGBA."""
    side, radius = float(options.canvas), options.radius * options.canvas
    paths = []
    for _ in range(options.strokes):
        low, high = options.segments
        segments = int(torch.randint(low, high + 1, (), generator=generator))
        start = torch.rand(2, generator=generator) * side
        steps = (torch.rand(3 * segments, 2, generator=generator) - 0.5) * radius
        points = torch.cat([start[None], start + torch.cumsum(steps, 0)])
        paths.append(VectorPath(points, torch.tensor(width), torch.rand(4, generator=generator)))
    return paths


def clipdraw_loss(guide: ClipGuide, picture: torch.Tensor, prompt: torch.Tensor, negatives: torch.Tensor,
                  options: DrawOptions, generator: torch.Generator) -> torch.Tensor:
    """Mean over augmented views of -cos(view, prompt) + weight * sum cos(view, negative)."""
    views = augment(picture[None], guide.size, options.augment, generator)
    embeds = guide.embed_images(views)
    loss = -(embeds @ prompt)
    if negatives.numel():
        loss = loss + options.negative_weight * (embeds @ negatives.T).sum(dim=1)
    return loss.mean()


#: ``on_picture(step, picture)``: ``picture()`` renders the drawing as it is after that step (called lazily, so a
#: consumer that shows every tenth step pays for one render in ten)
PictureHook = Callable[[int, Callable[[], torch.Tensor]], None]


def reporter(on_step: Callable[[int, float], None] | None, on_picture: PictureHook | None,
             picture: Callable[[], torch.Tensor]) -> Callable[[int, float], None] | None:
    """One per-step callback that feeds both hooks (None when neither is given)."""
    if on_picture is None:
        return on_step

    def report(step: int, loss: float) -> None:
        if on_step is not None:
            on_step(step, loss)
        on_picture(step, picture)
    return report


def clipdraw(bundle: Bundle, prompt: str, options: DrawOptions | None = None,
             on_step: Callable[[int, float], None] | None = None, on_picture: PictureHook | None = None
             ) -> tuple[Drawing, list[float]]:
    """Run CLIPDraw for ``prompt``: the drawing and the loss of each step."""
    options = options or DrawOptions()
    guide = ClipGuide(bundle)
    text = guide.embed_prompts([prompt])[0]
    negatives = (guide.embed_prompts(list(options.negative_prompts)) if options.negative_prompts
                 else text.new_zeros((0, text.shape[0])))
    generator = torch.Generator().manual_seed(options.seed)
    device = bundle.device
    thinnest = options.canvas / guide.size[1]          # 1 px of the CLIP's input, in canvas pixels
    paths = [VectorPath(p.points.to(device).requires_grad_(True), p.width.to(device).requires_grad_(True),
                        p.stroke.to(device).requires_grad_(True))
             for p in init_paths(options, generator, thinnest)]
    drawing = Drawing(paths, (options.canvas, options.canvas), meta={"prompt": prompt, "method": "clipdraw"})
    scale = options.canvas / PAPER_CANVAS
    groups = OptimiserGroups.adam({"points": ([p.points for p in paths], options.lr_points * scale),
                                   "widths": ([p.width for p in paths], options.lr_width * scale),
                                   "colours": ([p.stroke for p in paths], options.lr_colour)},
                                  schedule={"points": ((0.5, 0.4), (0.75, 0.1))}, total=options.steps)
    max_width = options.max_width * scale

    def step(_: int) -> torch.Tensor:
        return clipdraw_loss(guide, render(drawing, options.samples), text, negatives, options, generator)

    def clamp() -> None:
        for path in paths:
            path.width.clamp_(thinnest, max(max_width, thinnest))
            path.stroke.clamp_(0.0, 1.0)

    def picture() -> torch.Tensor:
        with torch.no_grad():
            return render(drawing.detached(), options.samples)

    losses = run_steps(step, groups, options.steps, after_step=clamp, on_step=reporter(on_step, on_picture, picture))
    return drawing.detached(), losses


#: what ``draw(method=...)`` and ``clipdense draw --method`` accept
DRAW_METHODS = ("clipdraw", "vqgan")


def draw(bundle: Bundle, prompt: str, strokes: int | None = None, steps: int = 200, seed: int = 0,
         options: "DrawOptions | VQGANClipOptions | None" = None,
         on_step: Callable[[int, float], None] | None = None, method: str = "clipdraw",
         on_picture: PictureHook | None = None) -> Drawing:
    """A drawing of ``prompt`` after ``steps`` steps, as a ``Drawing`` either way (write it with ``write_svg`` /
    ``write_png``): ``method="clipdraw"``: ``strokes`` vector paths (default 64) in ``drawing.paths``;
    ``method="vqgan"``: VQGAN-CLIP's picture in ``drawing.raster`` (no strokes: giving ``strokes`` is an error).
    ``options`` (``DrawOptions`` / ``VQGANClipOptions``) sets the rest; its strokes/steps/seed are overridden.
    ``on_picture(step, picture)`` sees the picture as it forms (``picture()`` renders it)."""
    from .vqgan import VQGANClipOptions, vqgan_clip

    if method == "vqgan":
        if strokes is not None:
            raise ConfigError("strokes: VQGAN-CLIP draws a raster picture, not strokes; leave strokes unset")
        if options is not None and not isinstance(options, VQGANClipOptions):
            raise ConfigError("options: method 'vqgan' takes VQGANClipOptions")
        return vqgan_clip(bundle, prompt, replace(options or VQGANClipOptions(), steps=steps, seed=seed),
                          on_step, on_picture=on_picture)[0]
    if method != "clipdraw":
        raise ConfigError(f"method {method!r}: expected one of {list(DRAW_METHODS)}")
    if options is not None and not isinstance(options, DrawOptions):
        raise ConfigError("options: method 'clipdraw' takes DrawOptions")
    options = replace(options or DrawOptions(), strokes=64 if strokes is None else strokes, steps=steps, seed=seed)
    return clipdraw(bundle, prompt, options, on_step, on_picture)[0]
