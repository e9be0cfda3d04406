"""The audio tower shipped beside the synthworld CLIP: its hash, its binding to that CLIP, and its card's numbers."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import clipdense as cd
from clipdense.heads import read_head_info
from clipdense.tasks.audio import AUDIO_WEIGHTS_DIR, audio_tower, shipped_audio_tower

SHIPPED = AUDIO_WEIGHTS_DIR / "tiny-vit-t8--synthworld.safetensors"


def test_the_tower_is_in_the_checkout() -> None:
    """The card and record ship with the weights: a checkout that has the record but not the file (the weights were
    once hidden by the *.safetensors ignore rule) fails here instead of every audio test skipping."""
    assert SHIPPED.with_suffix(".json").is_file() and SHIPPED.is_file(), SHIPPED


def _record() -> dict:
    return json.loads(SHIPPED.with_suffix(".json").read_text())


def test_the_file_is_the_one_recorded_small_fp16_and_bound_to_the_shipped_clip() -> None:
    record = _record()
    assert hashlib.sha256(SHIPPED.read_bytes()).hexdigest() == record["sha256"]
    assert SHIPPED.stat().st_size == record["bytes"] < 2_000_000
    info = read_head_info(SHIPPED)
    assert info.kind == "audio/audioclip" and info.config["full"] is False
    assert (info.backbone.name, info.backbone.pretrained) == ("tiny-vit-t8", "synthworld")
    assert SHIPPED.with_suffix(".md").is_file()


def test_found_for_its_clip_and_refused_beside_other_weights() -> None:
    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    from clipdense.models.towers import tower_facts
    assert shipped_audio_tower(bundle) == SHIPPED
    assert audio_tower(bundle).config.embed_dim == tower_facts(bundle.model).output_dim
    random_init = cd.load_model("tiny-vit-t8", device="cpu")
    assert shipped_audio_tower(random_init) is None
    with pytest.raises(cd.ModelLoadError, match="trained on 'tiny-vit-t8' pretrained 'synthworld'"):
        cd.use_audio_tower(random_init, SHIPPED)


@pytest.mark.slow
def test_the_card_numbers_reproduce_on_a_regenerated_world(tmp_path: Path) -> None:
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from ship_audio_tower import card_eval, card_world
    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    scores = card_eval(bundle, SHIPPED, card_world(tmp_path / "world"))
    recorded = _record()["scores"]
    assert scores["audio-zeroshot"]["top1_mean_over_folds"] == pytest.approx(
        recorded["audio-zeroshot"]["top1_mean_over_folds"], abs=0.02)
    got, want = scores["audio-retrieval"]["audio_to_image"], recorded["audio-retrieval"]["audio_to_image"]
    assert float(got.get(1, got.get("1"))) == pytest.approx(float(want["1"]), abs=0.03)
