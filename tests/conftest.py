"""Shared fixtures (tiny models and one tiny world, built once per session) and the tiers' slow-test report."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the suite neither reads nor fills the user's caches (the text-classifier cache lives under XDG_CACHE_HOME)
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="clipdense-tests-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

try:   # property-based tests (issue 32): a bounded number of examples from a fixed seed, the same on every run
    from hypothesis import HealthCheck, settings as hypothesis_settings

    hypothesis_settings.register_profile("clipdense", max_examples=30, derandomize=True, deadline=None, database=None,
                                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    hypothesis_settings.register_profile("thorough", parent=hypothesis_settings.get_profile("clipdense"),
                                         max_examples=500)
    hypothesis_settings.load_profile(os.environ.get("CLIPDENSE_HYPOTHESIS_PROFILE", "clipdense"))
except ImportError:   # the dev extra is not installed: the property tests skip themselves
    pass


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


@pytest.fixture(autouse=True)
def _torch_threads_stay_unchanged():
    """A test that leaves torch's thread count changed fails itself (and the count is put back): later in-process
    training would otherwise differ bit-wise from its subprocess half in the SIGKILL-and-resume tests."""
    threads = torch.get_num_threads()
    yield
    changed = torch.get_num_threads()
    torch.set_num_threads(threads)
    assert changed == threads, f"this test left torch.set_num_threads({changed}) (was {threads}); restore it"


@pytest.fixture(scope="module")
def bundle():
    """A fresh tiny-vit-t8 per test module, for tests that hook into or train around the model."""
    import clipdense as cd

    return cd.load_model("tiny-vit-t8", device="cpu")


# ---------------------------------------------------------------- one tiny world for the whole run

#: the world that tests which only read a world share: 8 train and 6 val scenes at 64 px, one classification
#: image per thing in val, every split in one shard. A test needing other counts builds its own.
TINY_WORLD = dict(train=8, val=6, image_size=64, classify_train_per_class=0, classify_val_per_class=1,
                  shard_size=100)


def _folder_fingerprint(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``TINY_WORLD`` folder, written once per test run (not once per module: a world costs a few tenths of a
    second and every reading module used to build the same one). Read it; never write into it."""
    from clipdense.data import SynthConfig, write_world

    out = tmp_path_factory.mktemp("tiny-world")
    write_world(SynthConfig(out=str(out), **TINY_WORLD))
    return out


@pytest.fixture(autouse=True)
def _shared_tiny_world_stays_unchanged(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that writes into the shared world fails itself, instead of a later test that reads it."""
    if "tiny_world" not in request.fixturenames:
        yield
        return
    root = request.getfixturevalue("tiny_world")
    before = _folder_fingerprint(root)
    yield
    assert _folder_fingerprint(root) == before, "this test wrote into the shared tiny_world; copy it or build one"


# ---------------------------------------------------------------- tiers: a newly slow unmarked test shows up

#: an unmarked test over this (setup + call + teardown, seconds) belongs in the slow tier or needs to be faster
UNMARKED_LIMIT_S = 5.0
_unmarked_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Sum each unmarked test's phases (a module fixture's cost lands on the first test that asks for it)."""
    if "slow" not in report.keywords:
        _unmarked_seconds[report.nodeid] = _unmarked_seconds.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fast tier keeps its 3-minute budget only if nobody adds a heavy test without `@pytest.mark.slow`."""
    over = sorted(((s, n) for n, s in _unmarked_seconds.items() if s > UNMARKED_LIMIT_S), reverse=True)
    if over:
        terminalreporter.section(f"unmarked tests over {UNMARKED_LIMIT_S:g} s: mark them slow or make them faster")
        for seconds, nodeid in over:
            terminalreporter.write_line(f"{seconds:6.1f}s {nodeid}")
