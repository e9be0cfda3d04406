"""The page's sound tab: an uploaded sound's zero-shot classes equal `cd.classify` of the file, its nearest world
scenes equal `cd.search` with the sound, bad uploads are one line, and the page's button is the API /listen."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import clipdense as cd
from clipdense.data.audio import read_audio, write_wav
from clipdense.errors import ConfigError, ImageLoadError
from clipdense.tasks.audio import AUDIO_WEIGHTS_DIR
from clipdense.web import Analyser
from clipdense.web.examples import world_examples
from clipdense.web.sound import SoundRequest, listen, read_sound

SHIPPED = (AUDIO_WEIGHTS_DIR / "tiny-vit-t8--synthworld.safetensors").is_file()
CLASSES = "red circle, blue star, green triangle"


def _tone(path: Path, seconds: float = 1.0, hz: float = 330.0) -> Path:
    t = np.arange(int(16000 * seconds)) / 16000
    write_wav(path, 0.5 * np.sin(2 * np.pi * hz * t) * np.sin(np.pi * t / seconds) ** 2, 16000)
    return path


def test_bad_uploads_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="upload a sound file"):
        read_sound(None)
    picture = tmp_path / "photo.png"
    picture.write_bytes(b"not even a picture")
    with pytest.raises(ConfigError, match="sound photo.png: not a sound file"):
        read_sound(picture)
    broken = tmp_path / "broken.wav"
    broken.write_text("RIFF? no")
    with pytest.raises(ImageLoadError, match="not a readable sound file"):
        read_sound(broken)
    import clipdense.web.sound as sound
    monkeypatch.setattr(sound, "MAX_SOUND_SECONDS", 0.5)
    with pytest.raises(ImageLoadError, match="at most 0 s|at most 1 s"):
        read_sound(_tone(tmp_path / "long.wav", seconds=2.0))


@pytest.mark.skipif(not SHIPPED, reason="no shipped audio tower")
def test_the_tab_answers_what_classify_and_search_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    wav = _tone(tmp_path / "tone.wav")
    scenes = [path for path, _ in world_examples(6, folder=tmp_path / "scenes")]
    analyser = Analyser(device="cpu")
    heard = listen(analyser, SoundRequest(wav, CLASSES, templates="world"), scenes, nearest=3)
    bundle = analyser.models.bundle("tiny-vit-t8", "synthworld")
    names = [c.strip() for c in CLASSES.split(",")]
    probs = cd.classify(bundle, str(wav), names, templates="world")
    expected = sorted(zip(names, probs.tolist()), key=lambda item: -item[1])
    assert list(heard.ranking) == [name for name, _ in expected]
    assert list(heard.ranking.values()) == pytest.approx([p for _, p in expected], abs=1e-6)
    ranked = cd.search(bundle, scenes, read_audio(wav), top=3)
    assert [Path(p) for p, _ in heard.nearest] == [p for p, _ in ranked]
    assert [s for _, s in heard.nearest] == pytest.approx([s for _, s in ranked], abs=1e-6)
    summary = heard.summary()
    assert summary["ranking"][0]["class"] == expected[0][0] and len(summary["nearest"]) == 3


def test_the_page_has_a_sound_tab_whose_button_is_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gradio")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from clipdense.web.app import PageSettings, _error_text, build_app
    from clipdense.web.sound_page import make_sound_handler

    app = build_app(PageSettings(device="cpu", examples=1))
    assert "listen" in {getattr(fn, "api_name", None) for fn in app.fns.values()}
    handler = make_sound_handler(Analyser(device="cpu"), _error_text, scenes=2)
    message, ranking, gallery, summary = handler(None, CLASSES, "tiny-vit-t8", "synthworld", "world")
    assert message.startswith("**Error:**") and "upload a sound file" in message and ranking is None
    if SHIPPED:
        message, ranking, gallery, summary = handler(str(_tone(tmp_path / "t.wav")), CLASSES, "tiny-vit-t8",
                                                     "synthworld", "world")
        assert message.startswith("Heard as **") and set(ranking) == {c.strip() for c in CLASSES.split(",")}
        assert len(gallery) == 2 and all(caption.startswith("cosine ") for _, caption in gallery)
        assert torch.isclose(torch.tensor(sum(ranking.values())), torch.tensor(1.0), atol=1e-5)
