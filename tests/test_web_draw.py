"""The page's draw tab without a server: checked requests, and frames of the picture as it forms whose last one
is the finished drawing."""
from __future__ import annotations

import numpy as np
import pytest

from clipdense.errors import ConfigError
from clipdense.generation import render
from clipdense.generation.svg import to_image
from clipdense.web.draw import DrawRequest, draw_frames


@pytest.mark.parametrize("fields,message", [
    ({"prompt": "  "}, "type what to draw"),
    ({"prompt": "x" * 301}, "300 characters"),
    ({"method": "diffusion"}, "method 'diffusion'"),
    ({"steps": 0}, "steps: expected 1..1000"),
    ({"steps": 1001}, "steps: expected 1..1000"),
    ({"strokes": 0}, "strokes: expected 1..256"),
])
def test_bad_draw_requests_are_one_line(fields, message):
    with pytest.raises(ConfigError, match=message):
        DrawRequest(**{"prompt": "a red circle", **fields})


def test_frames_show_the_picture_as_it_forms_and_end_with_the_drawing(tiny_bundle):
    frames = list(draw_frames(tiny_bundle, DrawRequest("a red circle", steps=6, strokes=3), every=2, scale=2))
    assert [(f.step, f.steps) for f in frames] == [(2, 6), (4, 6), (6, 6)]
    assert all(f.drawing is None for f in frames[:-1]) and len(frames[-1].drawing.paths) == 3
    last = frames[-1]
    expected = to_image(render(last.drawing))
    assert last.image.size == (2 * expected.width, 2 * expected.height)
    assert np.array_equal(np.asarray(last.image)[::2, ::2], np.asarray(expected))
    assert not np.array_equal(np.asarray(frames[0].image), np.asarray(last.image))   # it moved
    assert all(f.loss is not None for f in frames)


def test_errors_of_the_method_reach_the_caller(tiny_bundle, monkeypatch):
    import clipdense.web.draw as web_draw

    def broken(*args, **kwargs):
        raise ConfigError("canvas too small")

    monkeypatch.setattr(web_draw, "draw", broken)
    with pytest.raises(ConfigError, match="canvas too small"):
        list(draw_frames(tiny_bundle, DrawRequest("a red circle", steps=2)))
