"""The synthetic world: deterministic procedural scenes of coloured things on stuff backgrounds.

Every scene is a pure function of (config, split, index): a worker pool can generate any slice
and the output is byte-identical across runs. Things are named "<colour> <shape>" (or a composite
noun such as "house"), so zero-shot prompts work out of the box.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import ConfigError
from .captions import CaptionPhrase, Mention, make_caption, make_caption_phrases, novel_words
from .shapes import COLOURS, COMPOSITES, DEFAULT_COLOURS, DEFAULT_SHAPES, MAX_ROTATION, SHAPES, Thing, draw_thing
from .stuff import DEFAULT_STUFF, STUFF, render_stuff

SPLIT_CODES = {"train": 0, "val": 1, "classify-train": 2, "classify-val": 3}
MIN_VISIBLE_FRACTION = 0.5  # an occluded thing keeps at least this much of itself visible
MIN_THING_PIXELS = 12


@dataclass
class SynthConfig:
    """Everything that defines a world (and how to write it). Saved as WORLD/config.yaml."""

    out: str = "world"
    train: int = 2000
    val: int = 500
    image_size: int = 96
    seed: int = 0
    shard_size: int = 500
    classify_train_per_class: int = 8
    classify_val_per_class: int = 8
    colours: list[str] = field(default_factory=lambda: list(DEFAULT_COLOURS))
    shapes: list[str] = field(default_factory=lambda: list(DEFAULT_SHAPES))
    composites: list[str] = field(default_factory=lambda: list(COMPOSITES))
    stuff: list[str] = field(default_factory=lambda: list(DEFAULT_STUFF))
    max_objects: int = 4
    empty_fraction: float = 0.1
    two_stuff_fraction: float = 0.4
    composite_fraction: float = 0.15
    min_scale: float = 0.15
    max_scale: float = 0.9
    novel_fraction: float = 0.25
    workers: int = 0


@dataclass
class Vocabulary:
    """Class lists of a world. ``classes`` = things + stuff: semantic label i, COCO category id i + 1."""

    things: list[str]
    stuff: list[str]
    base_things: list[str]
    novel_things: list[str]
    novel_words: list[str]
    combos: dict[str, tuple[str, str]]  # "red circle" -> ("red", "circle")

    @property
    def classes(self) -> list[str]:
        return self.things + self.stuff


@dataclass
class Scene:
    """One generated image with everything the writers need."""

    image: np.ndarray                 # (H, W, 3) uint8
    things: list[Thing]               # in drawing order (later ones occlude earlier ones)
    masks: list[np.ndarray]           # visible (H, W) bool mask of each thing
    stuff_map: np.ndarray             # (H, W) int, index into config.stuff
    stuff: list[str]                  # stuff names present, top to bottom
    caption: str
    phrases: list[CaptionPhrase] = field(default_factory=list)   # the caption's noun phrases -> indices of things


def place_if_visible(thing: Thing, size: int, things: list[Thing], full_area: list[int], owner: np.ndarray,
                     colour: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The occlusion rule every world shares: draw ``thing`` over the scene if it covers ``MIN_THING_PIXELS`` and
    leaves each earlier thing ``MIN_VISIBLE_FRACTION`` of itself visible; then it joins ``things`` / ``full_area``
    and the new (owner, colour) maps are returned, else None (the caller tries another place)."""
    rgb, mask = draw_thing(thing, size)
    area = int(mask.sum())
    if area < MIN_THING_PIXELS:
        return None
    trial = np.where(mask, len(things), owner)
    visible = np.bincount(trial.ravel() + 1, minlength=len(things) + 2)[1:]
    if not all(visible[j] >= MIN_VISIBLE_FRACTION * full_area[j] for j in range(len(things))):
        return None
    things.append(thing)
    full_area.append(area)
    return trial, np.where(mask[..., None], rgb, colour)

def _check_names(names: list[str], known: dict, what: str) -> None:
    unknown = [n for n in names if n not in known]
    if unknown or not names or len(set(names)) != len(names):
        raise ConfigError(f"--{what}: expected unique names from {sorted(known)}, got {names}")


def validate_config(cfg: SynthConfig) -> None:
    """Reject impossible worlds early with a message naming the option."""
    _check_names(cfg.colours, COLOURS, "colours")
    _check_names(cfg.shapes, SHAPES, "shapes")
    if cfg.composites:
        _check_names(cfg.composites, COMPOSITES, "composites")
    _check_names(cfg.stuff, STUFF, "stuff")
    if cfg.image_size < 32:
        raise ConfigError(f"--image-size: expected at least 32 pixels, got {cfg.image_size}")
    if cfg.train < 0 or cfg.val < 0 or cfg.shard_size < 1 or cfg.max_objects < 0:
        raise ConfigError("--train/--val/--max-objects must be >= 0 and --shard-size >= 1")
    if not 0 < cfg.min_scale <= cfg.max_scale <= 1.0:
        raise ConfigError(f"scales: expected 0 < min_scale <= max_scale <= 1, got {cfg.min_scale}, {cfg.max_scale}")
    if not 0 <= cfg.novel_fraction < 1:
        raise ConfigError(f"--novel-fraction: expected a value in [0, 1), got {cfg.novel_fraction}")


def make_vocabulary(cfg: SynthConfig) -> Vocabulary:
    """Class lists and the base/novel split: a Latin-square pattern so every colour and every
    shape keeps base combos and also appears in novel ones."""
    validate_config(cfg)
    order = np.random.default_rng([cfg.seed, 99]).permutation(len(cfg.shapes))
    per_colour = int(round(len(cfg.shapes) * cfg.novel_fraction))
    combos: dict[str, tuple[str, str]] = {}
    novel: list[str] = []
    for ci, colour in enumerate(cfg.colours):
        held = {int(order[(ci + k * max(1, len(cfg.shapes) // max(per_colour, 1))) % len(cfg.shapes)])
                for k in range(per_colour)}
        for si, shape in enumerate(cfg.shapes):
            name = f"{colour} {shape}"
            combos[name] = (colour, shape)
            if si in held:
                novel.append(name)
    things = list(combos) + list(cfg.composites)
    base = [t for t in things if t not in novel]
    return Vocabulary(things, list(cfg.stuff), base, novel, novel_words(cfg.colours, cfg.shapes), combos)


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    value = np.asarray(rgb, np.float32) * rng.uniform(0.88, 1.08) + rng.normal(0, 6, 3)
    return tuple(int(v) for v in np.clip(value, 0, 255))


def _sample_thing(rng: np.random.Generator, cfg: SynthConfig, vocab: Vocabulary, allowed: list[str],
                  radius: float, centre: tuple[float, float]) -> Thing:
    if cfg.composites and rng.random() < cfg.composite_fraction:
        name = shape = cfg.composites[int(rng.integers(len(cfg.composites)))]
        colour = cfg.colours[int(rng.integers(len(cfg.colours)))] if shape == "house" else None
    else:
        name = allowed[int(rng.integers(len(allowed)))]
        colour, shape = vocab.combos[name]
    return _make_thing(rng, cfg, name, shape, colour, radius, centre)


def _make_thing(rng: np.random.Generator, cfg: SynthConfig, name: str, shape: str, colour: str | None,
                radius: float, centre: tuple[float, float]) -> Thing:
    limit = MAX_ROTATION.get(shape, 180.0)
    main = _jitter(rng, COLOURS[colour]) if colour else (0, 0, 0)
    others = [c for c in ("red", "brown", "black", "blue") if c != colour]
    second = _jitter(rng, COLOURS[others[int(rng.integers(len(others)))]])
    return Thing(name, shape, colour, centre, radius, float(rng.uniform(-limit, limit)), main, second)


def _stuff_layout(rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Background pixels, per-pixel stuff index, and stuff names top to bottom (one or two regions)."""
    size = cfg.image_size
    first = int(rng.integers(len(cfg.stuff)))
    if len(cfg.stuff) < 2 or rng.random() >= cfg.two_stuff_fraction:
        return render_stuff(cfg.stuff[first], rng, size), np.full((size, size), first, np.int16), [cfg.stuff[first]]
    if "sky" in cfg.stuff and rng.random() < 0.5:
        first = cfg.stuff.index("sky")
    second = int((first + rng.integers(1, len(cfg.stuff))) % len(cfg.stuff))
    x = np.arange(size, dtype=np.float32)
    horizon = size * rng.uniform(0.3, 0.7) + size * 0.04 * np.sin(x / size * 2 * np.pi * rng.uniform(0.5, 2)
                                                                   + rng.uniform(0, 6.3))
    top = np.arange(size, dtype=np.float32)[:, None] < horizon[None, :]
    stuff_map = np.where(top, first, second).astype(np.int16)
    pixels = np.where(top[..., None], render_stuff(cfg.stuff[first], rng, size),
                      render_stuff(cfg.stuff[second], rng, size))
    return pixels, stuff_map, [cfg.stuff[first], cfg.stuff[second]]


def _place(rng: np.random.Generator, cfg: SynthConfig, vocab: Vocabulary, allowed: list[str], count: int
           ) -> tuple[list[Thing], list[np.ndarray], np.ndarray]:
    """Place up to ``count`` things largest-first, rejecting placements that hide an earlier thing."""
    size = cfg.image_size
    scales = np.exp(rng.uniform(np.log(cfg.min_scale), np.log(cfg.max_scale), count))
    owner = np.full((size, size), -1, np.int16)
    colour = np.zeros((size, size, 3), np.uint8)
    things: list[Thing] = []
    full_area: list[int] = []
    for scale in sorted(scales, reverse=True):
        radius = 0.5 * scale * size
        lo, hi = min(0.7 * radius, size / 2), max(size - 0.7 * radius, size / 2)
        for _ in range(8):
            centre = (float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)))
            thing = _sample_thing(rng, cfg, vocab, allowed, radius, centre)
            placed = place_if_visible(thing, size, things, full_area, owner, colour)
            if placed is not None:
                owner, colour = placed
                break
    masks = [owner == j for j in range(len(things))]
    return things, masks, colour


def _finish(rng: np.random.Generator, background: np.ndarray, things_rgb: np.ndarray,
            masks: list[np.ndarray]) -> np.ndarray:
    covered = np.any(np.stack(masks), axis=0) if masks else np.zeros(background.shape[:2], bool)
    pixels = np.where(covered[..., None], things_rgb.astype(np.float32), background)
    pixels += rng.normal(0.0, 3.0, pixels.shape).astype(np.float32)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _mentions(things: list[Thing], masks: list[np.ndarray]) -> list[Mention]:
    out = []
    for index, (thing, mask) in enumerate(zip(things, masks)):
        ys, xs = np.nonzero(mask)
        out.append(Mention(thing.shape, thing.colour, float(xs.mean()), float(ys.mean()), int(mask.sum()), index))
    return out


def scene_rng(cfg: SynthConfig, split: str, index: int) -> np.random.Generator:
    """The generator of one scene: independent of every other scene, so generation parallelises."""
    return np.random.default_rng([cfg.seed, SPLIT_CODES[split], index])


def generate_scene(cfg: SynthConfig, vocab: Vocabulary, split: str, index: int) -> Scene:
    """Scene ``index`` of ``split`` ("train" or "val"). Train scenes never contain novel things."""
    rng = scene_rng(cfg, split, index)
    background, stuff_map, stuff = _stuff_layout(rng, cfg)
    count = 0 if (cfg.max_objects == 0 or rng.random() < cfg.empty_fraction) else int(
        rng.integers(1, cfg.max_objects + 1))
    allowed = [t for t in vocab.combos if split != "train" or t not in vocab.novel_things]
    things, masks, things_rgb = _place(rng, cfg, vocab, allowed, count)
    image = _finish(rng, background, things_rgb, masks)
    caption, phrases = make_caption_phrases(rng, _mentions(things, masks), stuff, allow_novel=split != "train")
    return Scene(image, things, masks, stuff_map, stuff, caption, phrases)


def generate_single(cfg: SynthConfig, vocab: Vocabulary, split: str, class_name: str, index: int) -> Scene:
    """A single-object image of ``class_name`` for the ImageFolder split (mid-to-large scale, one stuff)."""
    rng = np.random.default_rng([cfg.seed, SPLIT_CODES[f"classify-{split}"], vocab.things.index(class_name), index])
    size = cfg.image_size
    stuff_index = int(rng.integers(len(cfg.stuff)))
    background = render_stuff(cfg.stuff[stuff_index], rng, size)
    colour, shape = vocab.combos.get(class_name, (None, class_name))
    if shape == "house":
        colour = cfg.colours[int(rng.integers(len(cfg.colours)))]
    radius = 0.5 * size * rng.uniform(0.45, 0.8)
    centre = tuple(float(v) for v in size / 2 + rng.uniform(-0.12, 0.12, 2) * size)
    thing = _make_thing(rng, cfg, class_name, shape, colour, radius, centre)
    rgb, mask = draw_thing(thing, size)
    image = _finish(rng, background, rgb, [mask])
    caption = make_caption(rng, _mentions([thing], [mask]), [cfg.stuff[stuff_index]], allow_novel=split != "train")
    return Scene(image, [thing], [mask], np.full((size, size), stuff_index, np.int16), [cfg.stuff[stuff_index]],
                 caption)
