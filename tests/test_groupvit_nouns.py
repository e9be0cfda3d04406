"""The rule-based noun extractor on hand-written captions (the world's grammar and everyday alt-text), and the
multi-label prompts drawn from it."""
from __future__ import annotations

import pytest
import torch

from clipdense.data.nouns import extract_nouns, singular
from clipdense.objectives.groupvit import noun_prompts


@pytest.mark.parametrize("caption, nouns", [
    # the synthetic world's captions: objects with their colours, then the backgrounds
    ("a picture showing a purple square below a blue square and a blue heart with the sky above grass.",
     ["purple square", "blue square", "blue heart", "sky", "grass"]),
    ("a green block, an orange heart and a green cross on water", ["green block", "orange heart", "green cross",
                                                                   "water"]),
    ("an image of a white cross against bricks.", ["white cross", "brick"]),
    ("there is two red discs to the left of a scarlet ball lying on a gravel path",
     ["red disc", "scarlet ball", "gravel path"]),
    ("three little houses and a snowman in fresh snow", ["little house", "snowman", "fresh snow"]),
    # everyday alt-text: verbs in -ing / -ed and listed verbs end phrases, plurals become singular
    ("A man riding a horse on a beach at sunset", ["man", "horse", "beach", "sunset"]),
    ("Two dogs are playing with a red frisbee in the park", ["dog", "red frisbee", "park"]),
    ("A woman holds an umbrella while children play in the snow.", ["woman", "umbrella", "child", "snow"]),
    ("A big old red double-decker bus parked next to buildings", ["red double-decker bus", "building"]),
    ("a cat sitting on a laptop keyboard; a cat!", ["cat", "laptop keyboard"]),
    ("", []),
])
def test_extract_nouns_on_hand_written_captions(caption: str, nouns: list[str]) -> None:
    assert extract_nouns(caption) == nouns


def test_phrase_length_and_plurals() -> None:
    assert extract_nouns("a big old red double-decker bus", max_words=1) == ["bus"]
    assert [singular(w) for w in ("boxes", "skies", "glass", "buses", "people", "stars", "cross")] == \
        ["box", "sky", "glass", "bus", "person", "star", "cross"]


def test_noun_prompts_draw_distinct_nouns_by_the_generator_and_pad_with_the_caption() -> None:
    caption = "a red circle, a blue star and a green heart on sand"
    draw = noun_prompts(caption, 3, torch.Generator().manual_seed(5))
    assert draw == noun_prompts(caption, 3, torch.Generator().manual_seed(5))        # seeded: resume-exact
    assert len(set(draw)) == 3 and all(p.startswith("a photo of a ") for p in draw)
    assert {p[len("a photo of a "):-1] for p in draw} <= {"red circle", "blue star", "green heart", "sand"}
    assert noun_prompts("a red circle", 3, torch.Generator(), "{}") == ["red circle", "a red circle",
                                                                        "a red circle"]
    assert noun_prompts("of the", 2, torch.Generator()) == ["of the", "of the"]
