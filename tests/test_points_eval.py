"""Evaluation on image-less data: a ModelNet (or ESC-50) reader has ``image_label`` but no image, so the image
``zeroshot`` task is left out of ``--tasks all`` with "needs images" and refused in one line when named, while
``points-zeroshot`` runs."""
from __future__ import annotations

from pathlib import Path

import pytest

from clipdense.cli.main import main
from clipdense.data.readers import IMAGE, READERS, provides, resolve_reader
from clipdense.data.world.points3d import write_points_world
from clipdense.data.world.shapes3d import Shapes3DConfig
from clipdense.errors import DataError
from clipdense.evaluation import plan_tasks


@pytest.fixture(scope="module")
def modelnet(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("points-eval")
    write_points_world(out, Shapes3DConfig(classes=["cube", "sphere"], train_per_class=1, test_per_class=1,
                                           points=64))
    return f"modelnet:root={out / 'modelnet40_normal_resampled'}"


def test_readers_without_images_do_not_feed_image_needs() -> None:
    for name in ("modelnet", "esc50", "urbansound8k"):
        kind = READERS[name]
        assert provides(kind, frozenset({"image_label"})) and not provides(kind, frozenset({IMAGE, "image_label"}))
    assert provides(READERS["imagefolder"], frozenset({IMAGE, "image_label"}))


def test_all_skips_the_image_zeroshot_and_runs_points(modelnet: str) -> None:
    plan = plan_tasks(modelnet, "all")
    assert [t.name for t in plan.tasks] == ["points-zeroshot"]
    assert plan.skipped["zeroshot"] == "needs images"
    assert plan.skipped["depth"] == "needs depth"


def test_named_image_task_is_refused_in_one_line(modelnet: str) -> None:
    with pytest.raises(DataError, match=r"eval task 'zeroshot' needs images; --data modelnet:.* has "
                                        r"image_label, points and no images$"):
        plan_tasks(modelnet, "zeroshot")
    with pytest.raises(DataError, match="needs images"):
        resolve_reader(modelnet, {IMAGE, "image_label"})


def test_world_still_feeds_zeroshot(tiny_world: Path) -> None:
    plan = plan_tasks(str(tiny_world), "zeroshot")
    assert [t.name for t in plan.tasks] == ["zeroshot"]


def test_cli_eval_named_zeroshot_on_points_exits_2(modelnet: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "--model", "tiny-vit-t8", "--data", modelnet, "--tasks", "zeroshot"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs images" in err[0]
