"""GLIP's self-training (issue 26): `clipdense ground --pseudo-label` boxes the noun phrases of a caption-only corpus
with a teacher head and writes modulated-COCO JSON (+ a data YAML) that a student trains on beside the gold data.
The labels must be exactly the teacher's sure boxes (``cd.ground`` of each caption, kept at ``min_score``/``top``)."""
from __future__ import annotations

import io
import json
import shlex
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

import clipdense as cd
from clipdense.cli.main import main
from clipdense.data.formats.grounding import ModulatedCoco
from clipdense.data.formats.imagetext import read_csv
from clipdense.data.phrases import noun_phrase_spans
from clipdense.data.readers import open_data
from clipdense.heads import save_head
from clipdense.heads.grounding import GLIPConfig, GLIPHead
from clipdense.tasks.ground import keep_best

TINY = dict(channels=32, layers=1, fusion_dim=32, fusion_heads=4, layer_scale=0.1, image_size=64,
            score_threshold=0.0)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A world with grounding (gold) and a teacher head file on the seeded tiny-vit-t8."""
    from clipdense.data import SynthConfig, write_world
    from clipdense.data.world.grounding import write_grounding

    root = tmp_path_factory.mktemp("pseudo")
    world = root / "world"
    write_world(SynthConfig(out=str(world), train=6, val=2, image_size=64, classify_train_per_class=0,
                            classify_val_per_class=0))
    write_grounding(world)
    bundle = cd.load_model("tiny-vit-t8", device="cpu")
    torch.manual_seed(0)
    head = GLIPHead(bundle, GLIPConfig(**TINY)).eval()
    save_head(head, root / "teacher.safetensors", bundle)
    return {"root": root, "world": world, "bundle": bundle, "head": head, "csv": world / "train.csv"}


def test_pseudo_labels_are_the_teachers_sure_boxes_beside_gold(setting, tmp_path):
    bundle, head, world = setting["bundle"], setting["head"], setting["world"]
    out = tmp_path / "labels" / "pseudo.json"
    report = cd.pseudo_label(bundle, head, setting["csv"], out, min_score=0.3, top=2, gold=str(world),
                             batch_size=4)
    rows = read_csv(setting["csv"])
    gold = open_data(str(world), {"boxes", "phrases"})[0]
    assert report.read == len(rows) and report.gold == len(gold) and report.labelled >= 1
    assert report.labelled + report.unsure + report.no_phrase == report.read
    written = ModulatedCoco(out.parent, out)
    assert len(written) == report.gold + report.labelled
    pseudo = written.records[report.gold:]
    by_path = {str(Path(p).resolve()): caption for p, caption in rows}
    boxes = 0
    for record in pseudo:
        caption = by_path[record.file_name]
        assert record.caption == caption
        expected = keep_best(cd.ground(bundle, record.file_name, caption, head=head), 0.3, 2)
        kept = [p for p in expected.phrases if len(p.boxes)]
        assert [list(p.spans) for p in kept] == record.spans
        assert all(list(p.spans[0]) in [list(s) for s in noun_phrase_spans(caption)] for p in kept)
        for phrase, written_boxes in zip(kept, record.boxes):
            assert torch.allclose(torch.tensor(written_boxes), phrase.boxes, atol=0.01)
            boxes += len(written_boxes)
    assert boxes == report.boxes
    # the gold records come first, unchanged but for absolute image paths
    assert [r.caption for r in written.records[:report.gold]] == [r.caption for r in gold.records]
    assert written.records[0].boxes == gold.records[0].boxes
    # the YAML beside is what `train --data` reads: gold + pseudo, with the fields glip needs
    reader, _, _ = open_data(str(report.data), {"boxes", "phrases"})
    assert len(reader) == len(written) and len(reader[len(reader) - 1].phrases) >= 1


def _tar(path: Path, items: list[tuple[str, Image.Image, str]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, image, caption in items:
            for name, data in ((f"{key}.png", _png(image)), (f"{key}.txt", caption.encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_shard_corpus_images_are_written_beside_and_captions_without_phrase_counted(setting, tmp_path):
    shard = tmp_path / "corpus-000.tar"
    scene = Image.open(read_csv(setting["csv"])[0][0]).convert("RGB")
    _tar(shard, [("a", scene, "a red circle and a blue star"), ("b", scene, "it is on the left")])
    out = tmp_path / "pseudo.json"
    report = cd.pseudo_label(setting["bundle"], setting["head"], str(shard), out, min_score=0.0, top=1)
    assert (report.read, report.no_phrase, report.labelled, report.gold) == (2, 1, 1, 0)
    record = ModulatedCoco(tmp_path, out).records[0]
    assert record.file_name == str((tmp_path / "pseudo-images" / "a.png").resolve())
    assert Path(record.file_name).is_file() and len(record.spans) == 2 and report.boxes == 2


def _cli_labels(setting: dict, out: Path, capsys) -> None:
    code = main(shlex.split(f"ground --pseudo-label {setting['csv']} --head {setting['root'] / 'teacher.safetensors'} "
                            f"--out {out} --min-score 0.3 --gold {setting['world']} --device cpu"))
    printed = capsys.readouterr().out
    assert code == 0 and "train a student with --data" in printed and out.with_suffix(".yaml").is_file()
    assert json.loads(out.read_text())["info"]["description"].startswith("clipdense pseudo-labels")


def test_the_cli_writes_pseudo_labels(setting, tmp_path, capsys):
    _cli_labels(setting, tmp_path / "pseudo.json", capsys)


@pytest.mark.slow
def test_a_student_trains_on_the_cli_pseudo_labels(setting, tmp_path, capsys):
    out = tmp_path / "pseudo.json"
    _cli_labels(setting, out, capsys)
    from clipdense.train.config import TrainConfig
    from clipdense.train.run import run_training
    arch = {k: v for k, v in TINY.items() if k != "score_threshold"}
    config = TrainConfig(model="tiny-vit-t8", objective="glip", data=str(out.with_suffix(".yaml")),
                         out=str(tmp_path / "student"), steps=2, batch_size=2, device="cpu", warmup_steps=1,
                         checkpoint_every=2, objective_args=arch)
    run_training(config)
    assert (tmp_path / "student" / "metrics.jsonl").is_file()


@pytest.mark.parametrize("line,expected", [
    ("ground --pseudo-label {csv} --head {head} --out {tmp}/x.png", ("--out", "expected a file ending in .json")),
    ("ground --pseudo-label {tmp}/none.csv --head {head} --out {tmp}/x.json", ("none.csv", "no such file")),
    ("ground --pseudo-label {csv} --head {head}", ("--pseudo-label needs --out",)),
    ("ground img.png --pseudo-label {csv} --head {head} --out {tmp}/x.json", ("give no IMAGE",)),
    ("ground img.png 'a red circle' --head {head} --gold {world}", ("--gold", "only with --pseudo-label")),
    ("ground --pseudo-label {csv} --head {head} --out {tmp}/x.json --limit 0", ("--limit", "expected a count")),
    ("ground --pseudo-label {csv} --head {head} --out {tmp}/x.json --batch-size 0", ("--batch-size",)),
    ("ground --pseudo-label {csv} --head {head} --out {tmp}/x.json --gold {tmp}", ("--gold",)),
    ("ground --pseudo-label {head} --head {head} --out {tmp}/x.json", ("teacher.safetensors",)),
])
def test_bad_pseudo_label_lines_are_one_line(setting, tmp_path, capsys, line, expected):
    names = {"csv": setting["csv"], "head": setting["root"] / "teacher.safetensors", "tmp": tmp_path,
             "world": setting["world"]}
    try:
        code = main(shlex.split(line.format(**names)) + ["--device", "cpu"])
    except SystemExit as exc:
        code = int(exc.code)
    err = [text for text in capsys.readouterr().err.splitlines() if text.strip()]
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert all(part in err[0] for part in expected), err
