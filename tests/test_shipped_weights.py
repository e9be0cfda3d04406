"""Shipped tiny weights: they load offline, match their recorded hash, and still reach their card's accuracy."""
from __future__ import annotations

import hashlib
import json

import pytest

import clipdense as cd
from clipdense.data.world.scenes import SynthConfig
from clipdense.data.world.writers import write_world
from clipdense.evaluation import evaluate
from clipdense.models.registry import WEIGHTS_DIR, shipped_weights

RECORDS = sorted(WEIGHTS_DIR.glob("*--*.json"))


def test_at_least_one_shipped_model_with_card():
    assert RECORDS, "no shipped weights: the demo and docs start from tiny-vit-t8 pretrained='synthworld'"
    for record in RECORDS:
        assert record.with_suffix(".safetensors").is_file() and record.with_suffix(".md").is_file()
    assert ("tiny-vit-t8", "synthworld") in shipped_weights()


@pytest.mark.slow
@pytest.mark.parametrize("record_path", RECORDS, ids=[p.stem for p in RECORDS])
def test_shipped_weights_reproduce_their_card(record_path, tmp_path):
    record = json.loads(record_path.read_text())
    weights = record_path.with_suffix(".safetensors")
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == record["sha256"]
    bundle = cd.load_model(record["model"], pretrained=record["tag"], device="cpu")
    write_world(SynthConfig(out=str(tmp_path / "world"), **record["world"]))
    results = evaluate(bundle, tmp_path / "world", tasks="zeroshot", templates=record["templates"], device="cpu")
    assert abs(results["tasks"]["zeroshot"]["top1"] - record["zeroshot_top1"]) < 0.015
    assert record["zeroshot_top1"] > 5 / 68   # far above chance (1 of 68 classes)
