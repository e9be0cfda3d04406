"""The media registry: files of other modalities reach the classifier their family registered."""
from __future__ import annotations

from pathlib import Path

import importlib

import pytest
import torch

import clipdense as cd
from clipdense.data import media

classify_module = importlib.import_module("clipdense.tasks.classify")   # the package re-exports the function


def test_suffixes_name_their_medium_and_a_taken_suffix_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media, "MEDIA", dict(media.MEDIA))
    assert media.media_kind("a/b.PNG") == "image" and media.media_kind("x.unknown") == "image"
    media.register_media("probe", (".prb",))
    assert media.media_kind("shape.PRB") == "probe"
    with pytest.raises(ValueError, match="already registered as probe"):
        media.register_media("other", (".prb",))
    with pytest.raises(cd.DataError, match="a probe file, expected a image file"):
        media.require_kind("shape.prb", "image", "--photo")


def test_classify_dispatches_a_registered_medium(tiny_bundle, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media, "MEDIA", {**media.MEDIA, ".prb": "probe"})
    path = tmp_path / "thing.prb"
    path.write_text("x")
    with pytest.raises(cd.ConfigError, match="no classifier for probe files"):
        cd.classify(tiny_bundle, str(path), ["a", "b"])
    monkeypatch.setitem(classify_module.FILE_CLASSIFIERS, "probe", "classify:_probe_for_tests")
    monkeypatch.setattr(classify_module, "_probe_for_tests",
                        lambda bundle, p, classes, templates: torch.tensor([0.25, 0.75]), raising=False)
    assert cd.classify(tiny_bundle, path, ["a", "b"]).tolist() == [0.25, 0.75]
