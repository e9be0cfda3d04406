"""Shared fixtures: tiny models are built once per session (they are random-init and cheap)."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the suite neither reads nor fills the user's caches (the text-classifier cache lives under XDG_CACHE_HOME)
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="clipdense-tests-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def tiny_bundle():
    """tiny-vit-t8 on CPU (random init is seeded), shared by tests that only read it."""
    import clipdense as cd

    return cd.load_model("tiny-vit-t8", device="cpu")


@pytest.fixture(autouse=True)
def _shared_tiny_bundle_stays_unchanged(request):
    """A test that changes the shared tiny model fails itself, instead of a later test that reads it."""
    if "tiny_bundle" not in request.fixturenames:
        yield
        return
    from clipdense.models.weights import model_fingerprint

    model = request.getfixturevalue("tiny_bundle").model
    before = model_fingerprint(model)
    yield
    assert model_fingerprint(model) == before, "this test changed the shared tiny_bundle; use the `bundle` fixture"


@pytest.fixture(scope="module")
def bundle():
    """A fresh tiny-vit-t8 per test module, for tests that hook into or train around the model."""
    import clipdense as cd

    return cd.load_model("tiny-vit-t8", device="cpu")
