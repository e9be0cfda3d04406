"""The page's video tab: the whole-clip ranking equals `cd.classify` of the file, a window spanning the clip gives every
frame that answer, a one-frame window is each frame's own embedding, bad uploads are one line, and the button is the
API /watch."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import clipdense as cd
from clipdense.data.video import FrameSampling, read_video, write_video
from clipdense.data.world.video import VideoWorldConfig, retrieval_clip
from clipdense.errors import ConfigError, ImageLoadError
from clipdense.objectives.actionclip import TEMPLATE_SETS
from clipdense.objectives.video_common import center_view
from clipdense.objectives.views import model_image_stats
from clipdense.web import Analyser
from clipdense.web.video import TIMELINE_FRAMES, VideoRequest, action_timeline, read_upload, watch

pytest.importorskip("av")
ACTIONS = "moves left, grows, spins"


def _clip(path: Path, frames: int = 6) -> Path:
    write_video(path, retrieval_clip(VideoWorldConfig(frames=frames, size=64), "val", 0).frames)
    return path


def test_bad_uploads_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="upload a video file"):
        read_upload(None)
    (tmp_path / "photo.png").write_bytes(b"png?")
    with pytest.raises(ConfigError, match="video photo.png: not a video file"):
        read_upload(tmp_path / "photo.png")
    (tmp_path / "broken.mp4").write_bytes(b"junk")
    with pytest.raises(ImageLoadError, match="not a readable video"):
        read_upload(tmp_path / "broken.mp4")


def test_timeline_by_construction(tiny_bundle, tmp_path: Path) -> None:
    frames = read_video(_clip(tmp_path / "c.mp4"), FrameSampling(6))
    classes = [c.strip() for c in ACTIONS.split(",")]
    whole, wide = action_timeline(tiny_bundle, frames, classes, "world", half_window=6)
    expected = cd.classify_video(tiny_bundle, frames, classes, "world")
    assert torch.allclose(whole, expected, atol=1e-5)
    assert torch.allclose(wide, expected.expand(6, -1), atol=1e-5)   # every window is the whole clip
    _, narrow = action_timeline(tiny_bundle, frames, classes, "world", half_window=0)
    size, mean, std = model_image_stats(tiny_bundle.model)
    with torch.no_grad():   # one frame per window: its own unit embedding against the prompts
        own = tiny_bundle.model.encode_image(center_view(frames, size, mean, std), normalize=True)
        text = cd.text_classifier(tiny_bundle, classes, TEMPLATE_SETS["world"])
        by_hand = (tiny_bundle.model.logit_scale.exp() * own @ text.T).softmax(-1)
    assert torch.allclose(narrow, by_hand, atol=1e-5)
    with pytest.raises(ConfigError, match="half window -1"):
        action_timeline(tiny_bundle, frames, classes, "world", half_window=-1)


@pytest.mark.slow   # builds the whole page (~10 s)
def test_the_page_has_a_video_tab_whose_button_is_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gradio")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from clipdense.web.app import PageSettings, build_app

    app = build_app(PageSettings(device="cpu", examples=1))
    assert "watch" in {getattr(fn, "api_name", None) for fn in app.fns.values()}


def test_the_tab_answers_what_classify_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from clipdense.web.video import make_video_handler

    def _error_text(exc: Exception) -> str:   # the page's own (web.app) imports Gradio
        return f"**Error:** {exc}"

    analyser = Analyser(device="cpu")
    handler = make_video_handler(analyser, _error_text)
    message, ranking, picture, summary = handler(None, ACTIONS, 2, "tiny-vit-t8", "synthworld")
    assert message.startswith("**Error:**") and "upload a video file" in message and ranking is None
    path = _clip(tmp_path / "clip.mp4", frames=8)
    message, ranking, picture, summary = handler(str(path), ACTIONS, 2, "tiny-vit-t8", "synthworld")
    assert message.startswith("The clip as a whole: **") and len(summary["timeline"]) == TIMELINE_FRAMES
    bundle = analyser.models.bundle("tiny-vit-t8", "synthworld")
    classes = [c.strip() for c in ACTIONS.split(",")]
    probs = cd.classify_video(bundle, path, classes, "actionclip", sampling=FrameSampling(TIMELINE_FRAMES))
    assert list(ranking.values()) == pytest.approx(sorted(probs.tolist(), reverse=True), abs=1e-5)
    assert picture.size[1] == 48 + 20 * len(classes)
    watched = watch(analyser, VideoRequest(path, ACTIONS, half_window=0))
    assert watched.timeline.shape == (TIMELINE_FRAMES, 3)
