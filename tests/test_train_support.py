"""Shared helpers for the training tests (tiny in-memory data) and tests of the data stream itself."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from clipdense.data.sample import Sample
from clipdense.train.config import TrainConfig
from clipdense.data.streams import InMemorySamples
from clipdense.train.data import BatchStream, PrefetchedBatches, sample_seed

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}
SHAPES = ("square", "disc")


def make_samples(n: int = 16, size: int = 64) -> list[Sample]:
    """Coloured squares/discs on grey, captioned by colour and shape: learnable in a few steps."""
    samples = []
    names = list(COLOURS)
    for i in range(n):
        colour, shape = names[i % len(names)], SHAPES[(i // len(names)) % len(SHAPES)]
        image = Image.new("RGB", (size, size), (128, 128, 128))
        pixels = image.load()
        lo, hi = size // 4 + (i % 3), 3 * size // 4 - (i % 2)
        for y in range(lo, hi):
            for x in range(lo, hi):
                inside = shape == "square" or (x - size / 2) ** 2 + (y - size / 2) ** 2 < (size / 4) ** 2
                if inside:
                    pixels[x, y] = COLOURS[colour]
        samples.append(Sample(image, f"s{i}", caption=f"a {colour} {shape}"))
    return samples


def tiny_config(out: Path, objective: str = "clip", **overrides) -> TrainConfig:
    """A CPU config that runs in seconds on tiny-vit-t8."""
    values = dict(objective=objective, model="tiny-vit-t8", out=str(out), steps=4, batch_size=8, lr=1e-3,
                  warmup_steps=1, log_every=1, checkpoint_every=2, keep_checkpoints=2, device="cpu", seed=0)
    values.update(overrides)
    return TrainConfig(**values)


def test_sample_seeds_are_distinct_and_stable() -> None:
    seeds = {sample_seed(s, i) for s in range(2) for i in range(1000)}
    assert len(seeds) == 2000
    assert sample_seed(3, 7) == sample_seed(3, 7)


def test_batch_stream_resumes_where_it_stopped() -> None:
    def transform(sample, generator):
        return {"x": torch.rand(2, generator=generator), "len": torch.tensor(len(sample.caption))}

    def stream():
        return BatchStream(InMemorySamples(make_samples(10, 16), seed=1), transform, batch_size=3, seed=5)

    full = stream()
    batches = [full.next_batch() for _ in range(6)]
    first = stream()
    for _ in range(2):
        first.next_batch()
    resumed = stream()
    resumed.load_state_dict(first.state_dict())
    for expected in batches[2:]:
        got = resumed.next_batch()
        assert torch.equal(got["x"], expected["x"]) and torch.equal(got["len"], expected["len"])


def test_batch_stream_resumes_a_plain_iterable_by_skipping() -> None:
    samples = make_samples(7, 16)

    def transform(sample, generator):
        return {"t": torch.tensor([ord(c) for c in sample.caption.ljust(20)[:20]])}

    full = BatchStream(samples, transform, batch_size=2)
    expected = [full.next_batch()["t"] for _ in range(5)]
    resumed = BatchStream(samples, transform, batch_size=2)
    resumed.load_state_dict({"position": 4})
    assert all(torch.equal(resumed.next_batch()["t"], e) for e in expected[2:4])


def _noise_transform(sample, generator):
    return {"x": torch.rand(3, generator=generator) + sample.image.getpixel((0, 0))[0]}


def test_prefetched_batches_equal_plain_ones_and_report_consumed_state() -> None:
    samples = make_samples(10, 16)
    plain = BatchStream(InMemorySamples(samples, seed=2), _noise_transform, batch_size=4, seed=9)
    expected = [plain.next_batch()["x"] for _ in range(6)]
    stream = BatchStream(InMemorySamples(samples, seed=2), _noise_transform, batch_size=4, seed=9, augment_threads=3)
    ahead = PrefetchedBatches(stream, depth=3)
    batches = iter(ahead)
    got = [next(batches)["x"] for _ in range(2)]
    assert all(torch.equal(g, e) for g, e in zip(got, expected))
    assert ahead.state_dict()["position"] == 8            # what was handed out, not what was built
    resumed = PrefetchedBatches(BatchStream(InMemorySamples(samples, seed=2), _noise_transform, batch_size=4,
                                            seed=9), depth=2)
    resumed.load_state_dict(ahead.state_dict())
    ahead.close()
    assert all(torch.equal(b["x"], e) for b, e in zip(iter(resumed), expected[2:]))
    resumed.close()


def test_prefetch_thread_errors_reach_the_training_thread() -> None:
    def broken(sample, generator):
        raise ValueError("bad sample")

    ahead = PrefetchedBatches(BatchStream(make_samples(4, 16), broken, batch_size=2))
    with pytest.raises(ValueError, match="bad sample"):
        next(iter(ahead))
    ahead.close()
