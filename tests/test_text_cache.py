"""The on-disk text-classifier cache: hits, misses on anything the embeddings depend on, damaged entries,
atomic writes, bypassing it, and keeping it bounded."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import clipdense as cd
from clipdense.models import text_cache
from clipdense.models.text_cache import TextCache, cache_root, evict, use_text_cache


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(text_cache.ENV_SWITCH, raising=False)
    return tmp_path / "clipdense" / "text"


@pytest.fixture()
def prompts_seen(tiny_bundle, monkeypatch) -> list[int]:
    """The number of prompts each call of the text tower received."""
    seen: list[int] = []
    encode = tiny_bundle.model.encode_text

    def counting(tokens, *args, **kwargs):
        seen.append(len(tokens))
        return encode(tokens, *args, **kwargs)

    monkeypatch.setattr(tiny_bundle.model, "encode_text", counting)
    return seen


def entries(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.safetensors"))


def test_root_follows_xdg_cache_home(cache_dir):
    assert cache_root() == cache_dir


def test_second_call_reads_the_cache_and_equals_the_computation(tiny_bundle, cache_dir, prompts_seen):
    first = cd.text_classifier(tiny_bundle, ["red circle", "sky"], templates="world")
    assert sum(prompts_seen) == 2 * 4 and len(entries(cache_dir)) == 2
    second = cd.text_classifier(tiny_bundle, ["red circle", "sky"], templates="world")
    assert sum(prompts_seen) == 8, "the second call ran the text tower"
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    direct = cd.text_classifier(tiny_bundle, ["red circle", "sky"], templates="world", cache=False)
    torch.testing.assert_close(first, direct, rtol=0, atol=1e-6)


def test_only_new_class_names_are_computed(tiny_bundle, cache_dir, prompts_seen):
    cd.text_classifier(tiny_bundle, ["red circle", "sky"], templates="world")
    prompts_seen.clear()
    rows = cd.text_classifier(tiny_bundle, ["sky", "blue star", "red circle", "sky"], templates="world")
    assert sum(prompts_seen) == 4, "only 'blue star' should reach the text tower"
    assert rows.shape[0] == 4 and torch.equal(rows[0], rows[3])
    torch.testing.assert_close(rows, cd.text_classifier(tiny_bundle, ["sky", "blue star", "red circle", "sky"],
                                                        templates="world", cache=False), rtol=0, atol=1e-6)


def test_other_templates_miss(tiny_bundle, cache_dir, prompts_seen):
    cd.text_classifier(tiny_bundle, ["sky"], templates="world")
    cd.text_classifier(tiny_bundle, ["sky"], templates=["a {}.", "an image of a {}."])
    cd.text_classifier(tiny_bundle, ["sky"], templates="a photo of a {}.")
    assert prompts_seen == [4, 2, 1]
    assert len(entries(cache_dir)) == 3


def test_other_weights_miss(cache_dir):
    bundle = cd.load_model("tiny-vit-t8", device="cpu")
    before = cd.text_classifier(bundle, ["sky"], templates="world")
    with torch.no_grad():
        bundle.model.text_projection.mul_(-1)   # other weights, same architecture and name
    after = cd.text_classifier(bundle, ["sky"], templates="world")
    torch.testing.assert_close(after, -before, rtol=0, atol=1e-5)
    assert len({p.parent.name for p in entries(cache_dir)}) == 2


def test_damaged_entry_is_recomputed_and_rewritten(tiny_bundle, cache_dir, prompts_seen):
    good = cd.text_classifier(tiny_bundle, ["sky"], templates="world")
    (entry,) = entries(cache_dir)
    entry.write_bytes(b"\x00not a safetensors file")
    with pytest.warns(RuntimeWarning, match="damaged text-classifier cache entry"):
        again = cd.text_classifier(tiny_bundle, ["sky"], templates="world")
    torch.testing.assert_close(again, good, rtol=0, atol=1e-6)
    assert prompts_seen == [4, 4]
    assert cd.text_classifier(tiny_bundle, ["sky"], templates="world").shape == good.shape
    assert prompts_seen == [4, 4], "the rewritten entry should be read"


def entry_path(bundle, name: str, templates: str = "world") -> Path:
    cache = TextCache(bundle.model, bundle.tokenizer)
    return cache.path(cache.key([fill(name) for fill in cd.models.resolve_templates(templates)]))


def test_entry_of_another_key_or_with_nan_is_not_trusted(tiny_bundle, cache_dir):
    cd.text_classifier(tiny_bundle, ["sky", "grass"], templates="world")
    sky, grass = entry_path(tiny_bundle, "sky"), entry_path(tiny_bundle, "grass")
    os.replace(grass, sky)                     # a valid file under another class's name
    with pytest.warns(RuntimeWarning, match="wrong key"):
        cd.text_classifier(tiny_bundle, ["sky"], templates="world")
    width = int(tiny_bundle.model.text_projection.shape[1])
    TextCache(tiny_bundle.model, tiny_bundle.tokenizer).write(sky.stem, torch.full((width,), float("nan")), "sky")
    with pytest.warns(RuntimeWarning, match="wrong key, shape or values"):
        rows = cd.text_classifier(tiny_bundle, ["sky"], templates="world")
    assert torch.isfinite(rows).all()


def test_a_crash_while_writing_leaves_no_entry_and_no_temp_file(tiny_bundle, cache_dir, monkeypatch):
    def crash(src, dst):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        cd.text_classifier(tiny_bundle, ["sky"], templates="world")
    monkeypatch.undo()
    assert list(cache_dir.rglob("*")) == [] or all(p.is_dir() for p in cache_dir.rglob("*"))


def test_unwritable_cache_warns_and_still_answers(tiny_bundle, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(text_cache, "_warned_unwritable", set())
    with pytest.warns(RuntimeWarning, match="not writable"):
        rows = cd.text_classifier(tiny_bundle, ["sky"], templates="world")
    torch.testing.assert_close(rows, cd.text_classifier(tiny_bundle, ["sky"], templates="world", cache=False),
                               rtol=0, atol=1e-6)


def test_bypass_writes_nothing(tiny_bundle, cache_dir, prompts_seen, monkeypatch):
    with use_text_cache(False):
        cd.text_classifier(tiny_bundle, ["sky"], templates="world")
        cd.text_classifier(tiny_bundle, ["sky"], templates="world")
    monkeypatch.setenv(text_cache.ENV_SWITCH, "0")
    cd.text_classifier(tiny_bundle, ["sky"], templates="world")
    assert prompts_seen == [4, 4, 4] and not cache_dir.exists()
    monkeypatch.delenv(text_cache.ENV_SWITCH)
    cd.text_classifier(tiny_bundle, ["sky"], templates="world")
    assert len(entries(cache_dir)) == 1


def test_least_recently_used_models_are_evicted(cache_dir):
    for i in range(5):
        folder = cache_dir / f"model{i}"
        folder.mkdir(parents=True)
        os.utime(folder, (1000 + i, 1000 + i))
    removed = evict(cache_dir, keep=3)
    assert sorted(p.name for p in removed) == ["model0", "model1"]
    assert sorted(p.name for p in cache_dir.iterdir()) == ["model2", "model3", "model4"]


@pytest.mark.parametrize("command", ["segment", "classify"])
def test_cli_no_cache_bypasses_and_default_fills(cache_dir, tmp_path, command):
    from PIL import Image

    from clipdense.cli.main import main
    image = tmp_path / "photo.png"
    Image.new("RGB", (40, 32), (200, 30, 30)).save(image)
    extra = ["--out", str(tmp_path / "overlay.png")] if command == "segment" else []
    args = [command, str(image), "--classes", "red circle,sky", "--templates", "world", "--device", "cpu", *extra]
    assert main(args + ["--no-cache"]) == 0
    assert not cache_dir.exists()
    assert main(args) == 0
    assert len(entries(cache_dir)) == 2
