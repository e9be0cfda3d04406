"""Issue 32, artefact kinds checked at every entry: a head of another kind, a model file or a run folder where a head
is expected (and a head where a model is expected) is refused in one line naming what was given and what was
expected — at the CLI before any model loads (``no_work``), and in the Python calls.

The kind x role table is GENERATED from the head registry and ``heads.expect.ROLES``: a new kind or role is covered
the day it is registered. Head files here are headers only (``fake_head``): every refusal happens before weights
are read."""
from __future__ import annotations

import wave
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save

from clipdense.cli.main import main
from clipdense.errors import ConfigError, ModelLoadError
from clipdense.heads.expect import ROLES, expect_head
from clipdense.heads.io import (BACKBONE_FINGERPRINT_KEY, BACKBONE_NAME_KEY, BACKBONE_PRETRAINED_KEY, CONFIG_KEY,
                                DIGEST_KEY, FORMAT, FORMAT_KEY, KIND_KEY, VERSION, VERSION_KEY, metadata_digest)
from clipdense.heads.registry import known_head_kinds
from clipdense.models.registry import WEIGHTS_DIR
from test_reliability_outputs import no_work  # noqa: F401  (fixture)

MODEL_FILE = WEIGHTS_DIR / "tiny-vit-t8--synthworld.safetensors"
KINDS = known_head_kinds()


def fake_head(path: Path, kind: str) -> Path:
    """A head file's header of ``kind`` (one dummy tensor): enough for every check made before a load."""
    meta = {FORMAT_KEY: FORMAT, VERSION_KEY: str(VERSION), KIND_KEY: kind, CONFIG_KEY: "{}",
            BACKBONE_NAME_KEY: "tiny-vit-t8", BACKBONE_PRETRAINED_KEY: "synthworld", BACKBONE_FINGERPRINT_KEY: "0" * 16}
    meta[DIGEST_KEY] = metadata_digest(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(save({"w": torch.zeros(1)}, metadata=meta))
    return path


def _kind_of_file(kind: str) -> str:
    return kind.replace("/", "-") + ".safetensors"


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("heads")
    return {kind: fake_head(root / _kind_of_file(kind), kind) for kind in KINDS}


PAIRS = [(role, kind) for role in ROLES for kind in KINDS]


def test_the_table_covers_every_kind_and_role():
    assert len(KINDS) >= 15 and len(ROLES) >= 8 and len(PAIRS) == len(KINDS) * len(ROLES)
    for role in ROLES.values():   # every role is served by at least one registered kind, refused by others
        assert role.kinds() and set(role.kinds()) < set(KINDS)


@pytest.mark.parametrize("role, kind", PAIRS, ids=lambda v: v)
def test_each_kind_is_taken_or_refused_by_each_role(role: str, kind: str, heads) -> None:
    wanted = ROLES[role]
    if kind in wanted.kinds():
        assert expect_head(heads[kind], role, "--head").kind == kind
        return
    with pytest.raises(ModelLoadError) as info:
        expect_head(heads[kind], role, "--head")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"--head {heads[kind]}: a {kind} head cannot {wanted.verb}")
    assert f"expected {wanted.what} (" in message and wanted.kinds()[0] in message


def test_what_is_not_a_head_says_what_it_is(tmp_path: Path) -> None:
    model_run = tmp_path / "model-run"
    (model_run / "checkpoints" / "step-00000001").mkdir(parents=True)
    (model_run / "checkpoints" / "step-00000001" / "model.safetensors").write_bytes(b"")
    (model_run / "config.yaml").write_text("objective: clip\n")
    (tmp_path / "new-run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "photos").mkdir()
    (tmp_path / "notes.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    cases = {MODEL_FILE: "a CLIP model file ('tiny-vit-t8' weights for load_model / --model), not a head",
             model_run: "a run folder that trained a CLIP model, not a head",
             tmp_path / "new-run": "a run folder with no head checkpoint yet",
             tmp_path / "photos": "a folder that is neither a head file nor a run folder",
             tmp_path / "notes.safetensors": "not a readable safetensors file",
             tmp_path / "missing.safetensors": "no such file or folder"}
    for given, said in cases.items():
        with pytest.raises(ModelLoadError) as info:
            expect_head(given, "detector", "--head")
        message = str(info.value)
        assert message.startswith(f"--head {given}: ") and said in message and message.endswith(
            "; expected a detector head"), message


def test_a_head_run_folder_is_its_latest_head(tmp_path: Path) -> None:
    fake_head(tmp_path / "run" / "checkpoints" / "step-00000002" / "head.safetensors", "detector/fvit")
    assert expect_head(tmp_path / "run", "detector").kind == "detector/fvit"
    with pytest.raises(ModelLoadError, match=r"a detector/fvit head cannot segment; expected a segmentation head"):
        expect_head(tmp_path / "run", "segmenter")


def test_a_head_where_a_model_is_expected(tmp_path: Path, heads) -> None:
    from clipdense.models import load_model

    adapter = heads["adapter/coop"]
    with pytest.raises(ModelLoadError, match=r"a adapter/coop head file, not a model; expected CLIP weights"):
        load_model(str(adapter), device="cpu")
    with pytest.raises(ModelLoadError, match=r"a adapter/coop head file, not a model; expected CLIP weights"):
        load_model("tiny-vit-t8", pretrained=str(adapter), device="cpu")   # was: a list of missing keys
    fake_head(tmp_path / "run" / "checkpoints" / "step-00000001" / "head.safetensors", "segmenter/lseg")
    with pytest.raises(ModelLoadError, match=r"a run folder that trained a head, not a model; expected CLIP"):
        load_model(str(tmp_path / "run"), device="cpu")


def test_the_python_calls_check_the_kind_before_loading(heads) -> None:
    """The task functions refuse a wrong head file by its header (no backbone is needed to get that far) and a
    wrong module by its class."""
    from clipdense.heads.adapters import load_adapter
    from clipdense.tasks.audio import use_audio_tower
    from clipdense.tasks.detect import as_detector
    from clipdense.tasks.ground import as_grounder
    from clipdense.tasks.panoptic import as_panoptic_head
    from clipdense.tasks.segment import resolve_head

    calls = [(lambda h: resolve_head(None, h), "segment"), (lambda h: as_detector(h, None), "detect"),
             (lambda h: as_grounder(h, None), "ground"), (lambda h: as_panoptic_head(h, None), "segment panoptically"),
             (lambda h: load_adapter(h, None), "classify"), (lambda h: use_audio_tower(None, h), "embed sounds")]
    for call, verb in calls:
        with pytest.raises(ModelLoadError, match=f"a generator/vqgan head cannot {verb}; expected"):
            call(heads["generator/vqgan"])
        with pytest.raises(ConfigError, match=f": a Linear head cannot {verb}; expected"):
            call(torch.nn.Linear(2, 2))


@pytest.fixture
def media(tmp_path: Path) -> Path:
    Image.new("RGB", (32, 32), "red").save(tmp_path / "img.png")
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (32, 32), "blue").save(tmp_path / "imgs" / "a.png")
    with wave.open(str(tmp_path / "sound.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\x00\x00" * 1600)
    return tmp_path


#: (command line with {head} and {tmp}, the kind given, what the line must say was expected)
CLI_CASES = [
    (["segment", "{tmp}/img.png", "--classes", "a,b", "--head", "{head}", "--out", "{tmp}/o.png"], "detector/fvit",
     "a segmentation head"),
    (["segment", "{tmp}/imgs", "--classes", "a,b", "--head", "{head}", "--out", "{tmp}/out"], "adapter/coop",
     "a segmentation head"),
    (["segment", "{tmp}/img.png", "--classes", "a,b", "--head", "{head}", "--panoptic", "--out", "{tmp}/o.png"],
     "segmenter/catseg", "a panoptic head"),
    (["detect", "{tmp}/img.png", "--head", "{head}", "--out", "{tmp}/o.png"], "segmenter/lseg", "a detector head"),
    (["detect", "{tmp}/imgs", "--head", "{head}", "--out", "{tmp}/out"], "adapter/linear-probe", "a detector head"),
    (["ground", "{tmp}/img.png", "a red circle", "--head", "{head}", "--out", "{tmp}/o.png"], "detector/vild",
     "a grounding head"),
    (["classify", "{tmp}/img.png", "--adapter", "{head}"], "detector/fvit", "a few-shot adapter"),
    (["classify", "{tmp}/imgs", "--adapter", "{head}", "--out", "{tmp}/out"], "segmenter/lseg", "a few-shot adapter"),
    (["classify", "{tmp}/sound.wav", "--classes", "a,b", "--audio-tower", "{head}"], "adapter/coop",
     "an audio tower"),
    (["search", "{tmp}/imgs", "--audio", "{tmp}/sound.wav", "--audio-tower", "{head}"], "segmenter/catseg",
     "an audio tower"),
    (["export", "tiny-vit-t8", "--format", "onnx", "--out", "{tmp}/exp", "--head", "{head}"], "detector/fvit",
     "a segmentation head"),
    (["draw", "a cat", "--method", "vqgan", "--vqgan", "{head}", "--out", "{tmp}/d.svg"], "adapter/coop", "a VQGAN"),
]


@pytest.mark.parametrize("argv, kind, expected", CLI_CASES, ids=lambda v: v[0] if isinstance(v, list) else v)
def test_the_cli_refuses_another_kind_before_loading(argv, kind, expected, media, heads, no_work, capsys) -> None:
    head = heads[kind]
    code = _run([part.format(tmp=media, head=head) for part in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(head) in lines[0] and f"a {kind} head cannot" in lines[0] and f"expected {expected}" in lines[0]


def test_the_cli_names_a_model_given_as_a_head(media, no_work, capsys) -> None:
    code = _run(["detect", str(media / "img.png"), "--head", str(MODEL_FILE), "--out", str(media / "o.png")])
    line = capsys.readouterr().err.strip()
    assert code == 2 and line.endswith("not a head; expected a detector head") and "--head" in line, line


def test_eval_refuses_a_head_no_task_uses(tiny_world: Path, heads, no_work, capsys) -> None:
    """A head of a kind no planned task takes is refused (it was ignored); a named task of another kind too; with
    'all', tasks needing another kind are left out with a note."""
    from clipdense.evaluation import plan_tasks

    assert _run(["eval", "--data", str(tiny_world), "--tasks", "zeroshot,segmentation", "--head",
                 str(heads["adapter/coop"])]) == 2
    line = capsys.readouterr().err.strip()
    assert "a adapter/coop head, and no task run on this data uses one; expected" in line and "\n" not in line
    assert _run(["eval", "--data", str(tiny_world), "--tasks", "detection", "--head",
                 str(heads["segmenter/lseg"])]) == 2
    assert "a segmenter/lseg head cannot detect; expected a detector head" in capsys.readouterr().err
    plan = plan_tasks(tiny_world, "all", head=heads["segmenter/lseg"])
    assert "segmentation" in [t.name for t in plan.tasks]
    assert plan.skipped["detection"] == "needs a detector head, --head is a segmenter/lseg head"


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)
