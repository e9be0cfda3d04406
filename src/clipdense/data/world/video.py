"""The video world: short clips of the world's shapes doing things, alone or one after another, with captions that
name the actors, the motions and their order ("a red star moves left, then a blue heart grows").

Deterministic from a seed (one generator per split and clip index). Three kinds of clip:

- single: one actor does one motion over the whole clip;
- sequence: actor A does motion a in the first half, then actor B does motion b in the second half;
- the ``order`` split: pairs of sequence clips with the same two events in both orders. Its captions differ only by
  order, and the two clips' frames are nearly the same set, so a model that averages its frames cannot tell the two
  apart while a sequence-aware one can (CLIP4Clip's meanP vs seqTransf).

Motions in ``held_out`` never occur in the train split (zero-shot actions, ActionCLIP's protocol); they occur in the
Kinetics-style ``val`` folders only. The writer (``formats/video.py``) lays the clips out as MSR-VTT and Kinetics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .shapes import COLOURS, Thing, draw_thing

#: every motion, as the phrase a caption and an action class use
MOTIONS: tuple[str, ...] = ("moves left", "moves right", "moves up", "moves down", "grows", "shrinks", "spins",
                            "blinks", "bounces", "appears", "disappears", "changes colour")
#: motions never seen in training (each has a seen relative: moves up, grows, appears)
HELD_OUT: tuple[str, ...] = ("moves down", "shrinks", "disappears")
#: shapes that look different when turned (a circle that spins is invisible)
VIDEO_SHAPES: tuple[str, ...] = ("square", "triangle", "star", "cross", "heart", "diamond")
VIDEO_COLOURS: tuple[str, ...] = ("red", "yellow", "green", "blue", "purple", "white", "black", "orange")
SPLIT_SEEDS = {"train": 0, "val": 1, "order": 2, "kinetics-train": 3, "kinetics-val": 4}


@dataclass
class VideoWorldConfig:
    """What the video world holds.

    Args:
        train: train clips (MSR-VTT train list).
        val: val clips (the 1k-A style test list).
        order_pairs: pairs of clips in the order-swapped split (2 clips each).
        per_action: Kinetics-style clips per motion class and split.
        frames: frames per clip.
        size: frame side in pixels.
        fps: frame rate written into the files.
        sequence_fraction: share of two-event clips in train and val.
        held_out: motions never in training.
        seed: world seed.
    """

    train: int = 240
    val: int = 60
    order_pairs: int = 30
    per_action: int = 8
    frames: int = 8
    size: int = 64
    fps: float = 8.0
    sequence_fraction: float = 0.5
    held_out: tuple[str, ...] = HELD_OUT
    seed: int = 0

    @property
    def seen_motions(self) -> list[str]:
        return [m for m in MOTIONS if m not in self.held_out]


@dataclass
class Actor:
    """One thing on screen: its shape and colour names and its state at the start of its event."""

    shape: str
    colour: str
    centre: tuple[float, float]
    radius: float
    new_colour: str = ""

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class Event:
    """``actor`` does ``motion`` over frames [start, stop)."""

    actor: int
    motion: str
    start: int
    stop: int

    def phrase(self, actors: list[Actor]) -> str:
        actor = actors[self.actor]
        verb = f"turns {actor.new_colour}" if self.motion == "changes colour" else self.motion
        return f"a {actor.name} {verb}"


@dataclass
class Clip:
    """A generated clip: frames (T, S, S, 3) uint8, its caption, the events (in order) and its actors."""

    frames: np.ndarray
    caption: str
    events: list[Event]
    actors: list[Actor] = field(default_factory=list)

    @property
    def motions(self) -> list[str]:
        return [e.motion for e in self.events]


def _state(actor: Actor, motion: str, p: float, size: int) -> tuple[tuple[float, float], float, float, str, bool]:
    """(centre, radius, angle, colour, visible) of ``actor`` at progress ``p`` in [0, 1] of ``motion``."""
    (x, y), r, shift = actor.centre, actor.radius, 0.35 * size
    moves = {"moves left": (-shift, 0.0), "moves right": (shift, 0.0), "moves up": (0.0, -shift),
             "moves down": (0.0, shift)}
    if motion in moves:
        dx, dy = moves[motion]
        return (x + p * dx, y + p * dy), r, 0.0, actor.colour, True
    if motion in ("grows", "shrinks"):
        return (x, y), r * (1.0 + 0.9 * p if motion == "grows" else 1.0 - 0.55 * p), 0.0, actor.colour, True
    if motion == "spins":
        return (x, y), r, 360.0 * p, actor.colour, True
    if motion == "blinks":
        return (x, y), r, 0.0, actor.colour, p >= 1.0 or int(p * 6) % 2 == 0
    if motion == "bounces":
        return (x, y - 0.3 * size * abs(math.sin(2 * math.pi * p))), r, 0.0, actor.colour, True
    if motion in ("appears", "disappears"):
        return (x, y), r, 0.0, actor.colour, (p >= 0.5) == (motion == "appears")
    if motion == "changes colour":
        return (x, y), r, 0.0, actor.new_colour if p >= 0.5 else actor.colour, True
    raise ValueError(f"unknown motion {motion!r}")


def _place(rng: np.random.Generator, motion: str, size: int, taken: list[Actor]) -> tuple[tuple[float, float], float]:
    """A start centre and radius that keep the actor inside the frame for its whole motion."""
    radius = size * (0.08 if motion == "grows" else 0.11 if motion != "shrinks" else 0.14)
    margin = radius * (1.9 if motion == "grows" else 1.0) + 1
    shift = 0.35 * size
    low_x, high_x = margin + (shift if motion == "moves left" else 0), size - margin - (
        shift if motion == "moves right" else 0)
    low_y = margin + (shift if motion == "moves up" else 0.3 * size if motion == "bounces" else 0)
    high_y = size - margin - (shift if motion == "moves down" else 0)
    for _ in range(20):
        centre = (float(rng.uniform(low_x, high_x)), float(rng.uniform(low_y, high_y)))
        if all(math.dist(centre, a.centre) > 2.2 * max(radius, a.radius) for a in taken):
            return centre, radius
    return centre, radius


def _actor(rng: np.random.Generator, motion: str, size: int, taken: list[Actor]) -> Actor:
    names = {(a.colour, a.shape) for a in taken}
    while True:
        shape, colour = str(rng.choice(VIDEO_SHAPES)), str(rng.choice(VIDEO_COLOURS))
        if (colour, shape) not in names:
            break
    centre, radius = _place(rng, motion, size, taken)
    new = str(rng.choice([c for c in VIDEO_COLOURS if c != colour])) if motion == "changes colour" else ""
    return Actor(shape, colour, centre, radius, new)


def render(actors: list[Actor], events: list[Event], frames: int, size: int,
           background: tuple[int, int, int]) -> np.ndarray:
    """(T, S, S, 3) uint8: each actor before its event in its start state, during it moving, after it in its end
    state (an actor with no event stays still)."""
    out = np.empty((frames, size, size, 3), np.uint8)
    by_actor = {e.actor: e for e in events}
    for t in range(frames):
        canvas = np.empty((size, size, 3), np.uint8)
        canvas[:] = background
        for index, actor in enumerate(actors):
            event = by_actor.get(index)
            motion = event.motion if event else "spins"
            p = 0.0 if event is None else min(1.0, max(0.0, (t - event.start) / max(1, event.stop - event.start - 1)))
            centre, radius, angle, colour, visible = _state(actor, motion, p, size)
            if not visible:
                continue
            rgb = COLOURS[colour]
            thing = Thing(f"{colour} {actor.shape}", actor.shape, colour, centre, radius, angle, rgb, rgb)
            pixels, mask = draw_thing(thing, size)
            canvas[mask] = pixels[mask]
        out[t] = canvas
    return out


def _background(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(150, 215, size=3))   # light greys and tints, under every colour


def make_clip(rng: np.random.Generator, motions: list[str], cfg: VideoWorldConfig) -> Clip:
    """A clip of ``motions`` done one after another, each by its own actor, in equal parts of the clip."""
    actors: list[Actor] = []
    for motion in motions:
        actors.append(_actor(rng, motion, cfg.size, actors))
    bounds = np.linspace(0, cfg.frames, len(motions) + 1).round().astype(int)
    events = [Event(i, m, int(bounds[i]), int(bounds[i + 1])) for i, m in enumerate(motions)]
    frames = render(actors, events, cfg.frames, cfg.size, _background(rng))
    return Clip(frames, ", then ".join(e.phrase(actors) for e in events), events, actors)


def swapped(clip: Clip, cfg: VideoWorldConfig, rng: np.random.Generator) -> Clip:
    """The same actors doing the same motions in the other order (the order split's partner of ``clip``)."""
    first, second = clip.events
    half = cfg.frames // 2
    events = [Event(second.actor, second.motion, 0, half), Event(first.actor, first.motion, half, cfg.frames)]
    frames = render(clip.actors, events, cfg.frames, cfg.size, _background(rng))
    return Clip(frames, ", then ".join(e.phrase(clip.actors) for e in events), events, clip.actors)


def clip_rng(cfg: VideoWorldConfig, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, 7919, SPLIT_SEEDS[split], index])


def retrieval_clip(cfg: VideoWorldConfig, split: str, index: int) -> Clip:
    """Clip ``index`` of the train or val retrieval split (seen motions only; two distinct ones in a sequence)."""
    rng = clip_rng(cfg, split, index)
    seen = cfg.seen_motions
    count = 2 if rng.random() < cfg.sequence_fraction else 1
    motions = [str(m) for m in rng.choice(seen, size=count, replace=False)]
    return make_clip(rng, motions, cfg)


def order_pair(cfg: VideoWorldConfig, index: int) -> tuple[Clip, Clip]:
    """Pair ``index`` of the order split: two seen motions in one order and in the other."""
    rng = clip_rng(cfg, "order", index)
    motions = [str(m) for m in rng.choice(cfg.seen_motions, size=2, replace=False)]
    clip = make_clip(rng, motions, cfg)
    return clip, swapped(clip, cfg, rng)


def action_clip(cfg: VideoWorldConfig, split: str, motion: str, index: int) -> Clip:
    """A single-motion clip for the Kinetics-style folders."""
    rng = clip_rng(cfg, f"kinetics-{split}", MOTIONS.index(motion) * 100_003 + index)
    return make_clip(rng, [motion], cfg)
