"""The synthetic world: determinism, vocabulary split, geometry and captions."""
from __future__ import annotations

import numpy as np
import pytest

from clipdense.data.world.captions import COLOUR_WORDS
from clipdense.data.world.scenes import SynthConfig, generate_scene, generate_single, make_vocabulary
from clipdense.errors import ConfigError

CFG = SynthConfig(image_size=64, seed=3)


@pytest.fixture(scope="module")
def vocab():
    return make_vocabulary(CFG)


def test_same_seed_same_pixels_other_seed_differs(vocab):
    a = generate_scene(CFG, vocab, "train", 5)
    b = generate_scene(CFG, vocab, "train", 5)
    c = generate_scene(SynthConfig(image_size=64, seed=4), make_vocabulary(SynthConfig(seed=4)), "train", 5)
    assert np.array_equal(a.image, b.image) and a.caption == b.caption
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.image, generate_scene(CFG, vocab, "train", 6).image)


def test_vocabulary_has_8x8_things_and_a_balanced_novel_split(vocab):
    assert len(vocab.combos) == 64 and {"house", "snowman"} <= set(vocab.things)
    assert len(vocab.stuff) >= 6 and "sky" in vocab.stuff and "grass" in vocab.stuff
    assert set(vocab.base_things) | set(vocab.novel_things) == set(vocab.things)
    assert not set(vocab.base_things) & set(vocab.novel_things)
    for colour in CFG.colours:  # every colour stays in base and also appears novel
        mine = [t for t in vocab.novel_things if t.startswith(colour + " ")]
        assert 1 <= len(mine) < len(CFG.shapes)
    for shape in CFG.shapes:
        assert any(t.endswith(" " + shape) for t in vocab.novel_things)
    assert vocab.classes == vocab.things + vocab.stuff
    assert vocab.novel_words and all(w in {x for c in COLOUR_WORDS.values() for x in c[1]} | {"ball", "rhombus"}
                                     for w in vocab.novel_words)


def test_train_scenes_hold_no_novel_things_or_words(vocab):
    seen_novel_val = False
    for i in range(60):
        scene = generate_scene(CFG, vocab, "train", i)
        assert not {t.class_name for t in scene.things} & set(vocab.novel_things)
        assert not set(scene.caption.replace(".", " ").replace(",", " ").split()) & set(vocab.novel_words)
        val = generate_scene(CFG, vocab, "val", i)
        seen_novel_val |= bool({t.class_name for t in val.things} & set(vocab.novel_things))
    assert seen_novel_val


def test_masks_are_disjoint_visible_and_scales_vary(vocab):
    areas, empty, two_stuff = [], 0, 0
    for i in range(60):
        scene = generate_scene(CFG, vocab, "val", i)
        assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
        if scene.masks:
            stack = np.stack(scene.masks)
            assert stack.sum(0).max() <= 1  # one owner per pixel
            assert all(m.sum() >= 6 for m in scene.masks)
        areas += [m.mean() for m in scene.masks]
        empty += not scene.things
        two_stuff += len(scene.stuff) == 2
        assert set(np.unique(scene.stuff_map)) == {vocab.stuff.index(s) for s in scene.stuff}
    assert min(areas) < 0.02 and max(areas) > 0.3  # from a couple of patches to most of the image
    assert empty >= 1 and two_stuff >= 5


def test_captions_name_the_biggest_object_or_background(vocab):
    for i in range(40):
        scene = generate_scene(CFG, vocab, "train", i)
        assert scene.caption.strip()
        if not scene.things:
            assert any(word in scene.caption for word in ("sky", "water", "sea", "sand", "beach", "snow",
                                                          "grass", "lawn", "brick", "gravel"))


def test_single_object_images_show_the_requested_class(vocab):
    scene = generate_single(CFG, vocab, "val", "red circle", 0)
    assert [t.class_name for t in scene.things] == ["red circle"]
    red = scene.image[scene.masks[0]].mean(0)
    assert red[0] > 150 and red[1] < 90 and scene.masks[0].mean() > 0.1


def test_bad_config_names_the_option():
    with pytest.raises(ConfigError, match="--colours"):
        make_vocabulary(SynthConfig(colours=["red", "ultraviolet"]))
    with pytest.raises(ConfigError, match="--image-size"):
        make_vocabulary(SynthConfig(image_size=8))
