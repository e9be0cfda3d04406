"""Natural-language captions for synthetic scenes: attributes, counts, relations, synonyms.

Like web alt-text, a caption sometimes names only some of the objects. Some synonyms are
"novel words": they never occur in training captions, only in validation ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# word lists: (base synonyms, novel synonyms). The first base word is the class-name word.
COLOUR_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "red": (("red",), ("scarlet",)),
    "orange": (("orange",), ()),
    "yellow": (("yellow", "golden"), ()),
    "green": (("green",), ("emerald",)),
    "blue": (("blue",), ("azure",)),
    "purple": (("purple", "violet"), ()),
    "white": (("white",), ()),
    "black": (("black", "dark"), ()),
    "pink": (("pink",), ()),
    "brown": (("brown",), ()),
    "cyan": (("cyan", "turquoise"), ()),
    "grey": (("grey", "gray"), ()),
}
SHAPE_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "circle": (("circle", "disc", "round shape"), ("ball",)),
    "square": (("square", "block"), ()),
    "triangle": (("triangle",), ()),
    "star": (("star",), ()),
    "hexagon": (("hexagon",), ()),
    "cross": (("cross", "plus sign"), ()),
    "diamond": (("diamond",), ("rhombus",)),
    "heart": (("heart",), ()),
    "pentagon": (("pentagon",), ()),
    "ring": (("ring", "donut"), ()),
    "house": (("house", "little house"), ("cottage",)),
    "snowman": (("snowman",), ()),
    "bullseye": (("bullseye", "target"), ()),
    "checkerboard": (("checkerboard", "chessboard"), ()),
}
STUFF_WORDS: dict[str, tuple[str, ...]] = {
    "sky": ("the sky", "a blue sky"),
    "water": ("water", "the sea"),
    "sand": ("sand", "a beach"),
    "snow": ("snow", "fresh snow"),
    "grass": ("grass", "a lawn"),
    "brick": ("a brick wall", "bricks"),
    "gravel": ("gravel", "a gravel path"),
}
STUFF_PREPOSITION: dict[str, tuple[str, ...]] = {
    "sky": ("in", "against"), "water": ("on", "floating on"), "sand": ("on", "lying on"),
    "snow": ("on", "in"), "grass": ("on", "lying on"), "brick": ("in front of", "against"),
    "gravel": ("on", "lying on"),
}
COMPOSITE_SHAPES = ("house", "snowman", "bullseye", "checkerboard")
COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
TEMPLATES = ("a photo of {}.", "{}.", "there is {}.", "a picture showing {}.", "an image of {}.", "{}")
NOVEL_WORD_PROBABILITY = 0.3


@dataclass
class Mention:
    """What a caption may say about one object: its words' keys and where it is."""

    shape: str
    colour: str | None
    x: float
    y: float
    area: int
    index: int = -1   # the object's position in the scene's list (what a caption phrase points at)


def novel_words(colours: list[str], shapes: list[str]) -> list[str]:
    """The synonyms held out of training captions, for the world's vocabulary."""
    words = [w for c in colours for w in COLOUR_WORDS.get(c, ((), ()))[1]]
    return words + [w for s in shapes for w in SHAPE_WORDS.get(s, ((), ()))[1]]


def _word(rng: np.random.Generator, table: dict, key: str, allow_novel: bool) -> str:
    base, novel = table.get(key, ((key,), ()))
    if allow_novel and novel and rng.random() < NOVEL_WORD_PROBABILITY:
        return str(novel[int(rng.integers(len(novel)))])
    return str(base[int(rng.integers(len(base)))]) if rng.random() < 0.35 else base[0]


def _plural(noun: str) -> str:
    head, _, tail = noun.rpartition(" ")
    last = tail if head else noun
    plural = last + ("es" if last.endswith(("s", "x", "sh", "ch")) else "s")
    return f"{head} {plural}" if head else plural


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


#: a caption under construction: text pieces, each with the objects it names (``Mention.index``) or None
Pieces = list[tuple[str, "tuple[int, ...] | None"]]


@dataclass(frozen=True)
class CaptionPhrase:
    """A noun phrase of a caption: characters [start, end) name the objects ``objects`` (``Mention.index``)."""

    start: int
    end: int
    objects: tuple[int, ...]


def _noun_phrase(rng: np.random.Generator, group: list[Mention], allow_novel: bool) -> Pieces:
    m, count = group[0], len(group)
    noun = _word(rng, SHAPE_WORDS, m.shape, allow_novel)
    # composites like the house may leave their colour out; plain shapes always name it
    if m.colour is not None and not (m.shape in COMPOSITE_SHAPES and rng.random() < 0.5):
        noun = f"{_word(rng, COLOUR_WORDS, m.colour, allow_novel)} {noun}"
    text = _article(noun) if count == 1 else f"{COUNT_WORDS.get(count, 'several')} {_plural(noun)}"
    return [(text, tuple(g.index for g in group))]


def _join(parts: list[Pieces]) -> Pieces:
    if len(parts) == 1:
        return parts[0]
    out: Pieces = []
    for i, part in enumerate(parts):
        if i:
            out.append((" and " if i == len(parts) - 1 else ", ", None))
        out.extend(part)
    return out


def _relation(rng: np.random.Generator, a: Mention, b: Mention, allow_novel: bool) -> Pieces:
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) >= abs(dy):
        rel = "to the left of" if dx > 0 else "to the right of"
    else:
        rel = "above" if dy > 0 else "below"
    first = _noun_phrase(rng, [a], allow_novel)
    return first + [(f" {rel} ", None)] + _noun_phrase(rng, [b], allow_novel)


def _background(rng: np.random.Generator, stuff: list[str], with_objects: bool) -> str:
    nouns = [STUFF_WORDS[s][int(rng.integers(len(STUFF_WORDS[s])))] for s in stuff]
    if len(stuff) == 2:
        return f"{'with ' if with_objects else ''}{nouns[0]} above {nouns[1]}"
    if not with_objects:
        return nouns[0]
    preps = STUFF_PREPOSITION[stuff[0]]
    return f"{preps[int(rng.integers(len(preps)))]} {nouns[0]}"


def _render(pieces: Pieces) -> tuple[str, list[CaptionPhrase]]:
    text, phrases = "", []
    for piece, objects in pieces:
        if objects is not None:
            phrases.append(CaptionPhrase(len(text), len(text) + len(piece), objects))
        text += piece
    return text, phrases


def make_caption_phrases(rng: np.random.Generator, mentions: list[Mention], stuff: list[str], allow_novel: bool
                         ) -> tuple[str, list[CaptionPhrase]]:
    """One caption for a scene with ``mentions`` (objects) on ``stuff`` (top-to-bottom stuff names), and the
    character span of every noun phrase that names objects (what grounding data records)."""
    if not mentions:
        return TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(_background(rng, stuff, False)), []
    ordered = sorted(mentions, key=lambda m: -m.area)
    if len(ordered) > 1 and rng.random() < 0.3:  # web-style: mention only the most salient objects
        ordered = ordered[: int(rng.integers(1, len(ordered)))]
    groups: dict[tuple[str, str | None], list[Mention]] = {}
    for m in ordered:
        groups.setdefault((m.shape, m.colour), []).append(m)
    singles = [g[0] for g in groups.values() if len(g) == 1]
    if len(singles) >= 2 and len(groups) <= 3 and rng.random() < 0.4:
        a, b = singles[0], singles[1]
        rest = [_noun_phrase(rng, g, allow_novel) for g in groups.values() if g[0] not in (a, b)]
        description = _join([_relation(rng, a, b, allow_novel)] + rest)
    else:
        description = _join([_noun_phrase(rng, g, allow_novel) for g in list(groups.values())[:3]])
    if rng.random() < 0.75:
        description = description + [(f" {_background(rng, stuff, True)}", None)]
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    prefix, suffix = template.split("{}")
    return _render([(prefix, None)] + description + [(suffix, None)])


def make_caption(rng: np.random.Generator, mentions: list[Mention], stuff: list[str], allow_novel: bool) -> str:
    """One caption for a scene with ``mentions`` (objects) on ``stuff`` (top-to-bottom stuff names)."""
    return make_caption_phrases(rng, mentions, stuff, allow_novel)[0]
