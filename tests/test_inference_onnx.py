"""ONNX export and the onnxruntime path: graph parity with torch (max abs diff bounds) at several batch sizes and
image sizes, the runtime's labels equal to torch's, heads that export and the one that does not (and why), and the
flags' one-line errors. Exports take 10-20 s per graph on this CPU (torch's dynamo exporter), hence ``slow``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import clipdense as cd
from clipdense.cli.main import main
from clipdense.errors import ModelLoadError
from clipdense.models.dense import dense_forward, encode_dense

CLASSES = ["red circle", "blue square"]


@pytest.fixture(scope="module")
def shipped():
    return cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")


@pytest.fixture(scope="module")
def exported(shipped, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from clipdense.heads.segmentation import LSegConfig, LSegHead
    from clipdense.tasks.export import export_onnx

    torch.manual_seed(0)
    head = LSegHead(shipped.model, shipped.tokenizer, LSegConfig(), CLASSES).eval()
    folder = tmp_path_factory.mktemp("export")
    result = export_onnx(shipped, folder, ["maskclip", "naclip"], CLASSES, "plain", head=head)
    return folder, head, result


def _picture(seed: int, height: int, width: int) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(height, width, 3) * 255).astype("uint8"))


@pytest.mark.slow
def test_tiny_image_and_text_graphs_match_torch(shipped, exported):
    from clipdense.tasks.onnx_runtime import ExportedModel

    folder, _, result = exported
    assert result.files[:3] == ["image-maskclip.onnx", "image-naclip.onnx", "text.onnx"]
    model = ExportedModel(folder)
    torch.manual_seed(1)
    for mode in ("maskclip", "naclip"):
        for shape in [(1, 3, 64, 64), (2, 3, 72, 40), (3, 3, 128, 96)]:   # native grid, batches, other sizes
            images = torch.randn(*shape)
            dense, embedding = model.dense(images, mode)
            with torch.no_grad():
                reference = dense_forward(shipped.model, images, mode)
            assert (dense - F.normalize(reference.dense, dim=1)).abs().max() < 2e-6
            assert (embedding - F.normalize(reference.image_embed, dim=-1)).abs().max() < 2e-6
    stored = torch.from_numpy(np.load(folder / "classes.npy"))
    assert torch.allclose(stored, cd.text_classifier(shipped, CLASSES, "plain"), atol=1e-6)
    other = ["green star", "a yellow triangle"]   # not exported: through text.onnx and the tokenizer
    assert (model.text_classifier(other, "world") - cd.text_classifier(shipped, other, "world")).abs().max() < 2e-6
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["modes"] == ["maskclip", "naclip"] and manifest["classes"] == CLASSES


@pytest.mark.slow
def test_onnx_runtime_labels_and_probabilities_equal_torch(shipped, exported):
    from clipdense.tasks.onnx_runtime import ExportedModel, classify_onnx, segment_onnx

    model = ExportedModel(exported[0])
    for seed, (h, w) in enumerate([(90, 130), (64, 64)]):
        picture = _picture(seed, h, w)
        for names in (CLASSES, ["green star", "red circle", "blue square"]):
            assert torch.equal(segment_onnx(model, picture, names, "naclip", "plain", window=48),
                               cd.segment(shipped, picture, names, "naclip", "plain", window=48))
            assert (classify_onnx(model, picture, names, "plain") - cd.classify(shipped, picture, names, "plain")
                    ).abs().max() < 1e-5


@pytest.mark.slow
def test_lseg_head_exports_and_catseg_is_named_with_its_reason(shipped, exported, tmp_path):
    import onnxruntime as ort
    from segheads_toy import TINY_CATSEG

    from clipdense.heads.segmentation import CatSegConfig, CatSegHead
    from clipdense.tasks.export import ExportResult, _export_head

    folder, head, result = exported
    session = ort.InferenceSession(str(folder / "head.onnx"), providers=["CPUExecutionProvider"])
    for shape, names in [((1, 3, 64, 64), ["a", "b", "c"]), ((2, 3, 80, 64), CLASSES)]:
        images, text = torch.randn(*shape), head.text_features(names)
        with torch.no_grad():
            reference = head(images, text).float().numpy()
        scores = session.run(None, {"images": images.numpy(), "text": text.numpy()})[0]
        assert np.abs(scores - reference).max() < 1e-4
    catseg = CatSegHead(shipped.model, shipped.tokenizer, CatSegConfig(**TINY_CATSEG), CLASSES).eval()
    left = ExportResult(tmp_path)
    assert _export_head(catseg, CLASSES, torch.randn(2, 3, 72, 64), tmp_path, left) is None
    assert left.skipped == {"head.onnx": "segmenter/catseg: AssertionError: only 4D query, key, and value are "
                                         "supported"}   # its windowed attention runs SDPA on 6-D tensors


@pytest.mark.slow
def test_cli_runtime_onnx_writes_the_torch_labels(exported, tmp_path, capsys):
    image = tmp_path / "p.png"
    _picture(3, 70, 90).save(image)
    assert main(["segment", str(image), "--classes", ",".join(CLASSES), "--templates", "plain", "--runtime", "onnx",
                 "--onnx", str(exported[0]), "--out", str(tmp_path / "onnx.png")]) == 0
    assert main(["segment", str(image), "--classes", ",".join(CLASSES), "--templates", "plain",
                 "--precision", "fp32", "--out", str(tmp_path / "torch.png")]) == 0   # the graphs are fp32
    assert np.array_equal(np.asarray(Image.open(tmp_path / "onnx_labels.png")),
                          np.asarray(Image.open(tmp_path / "torch_labels.png")))


@pytest.mark.slow
def test_folder_runs_on_onnx_write_the_torch_outputs(exported, tmp_path, capsys):
    root = tmp_path / "in"
    root.mkdir()
    for i, (h, w) in enumerate([(64, 64), (70, 90), (64, 64)]):
        _picture(i, h, w).save(root / f"im{i}.png")
    common = ["--classes", ",".join(CLASSES), "--templates", "plain", "--no-progress"]
    onnx = ["--runtime", "onnx", "--onnx", str(exported[0])]
    fp32 = ["--precision", "fp32"]   # the graphs are fp32; the torch default (auto) may be bf16 on this CPU
    assert main(["segment", str(root), *common, *onnx, "--out", str(tmp_path / "seg-onnx")]) == 0
    assert main(["segment", str(root), *common, *fp32, "--out", str(tmp_path / "seg-torch")]) == 0
    for i in range(3):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "seg-onnx" / f"im{i}.png")),
                              np.asarray(Image.open(tmp_path / "seg-torch" / f"im{i}.png")))
    assert main(["classify", str(root), *common, *onnx, "--out", str(tmp_path / "cls-onnx")]) == 0
    assert main(["classify", str(root), *common, *fp32, "--out", str(tmp_path / "cls-torch")]) == 0
    onnx_rows = (tmp_path / "cls-onnx" / "predictions.csv").read_text().splitlines()
    torch_rows = (tmp_path / "cls-torch" / "predictions.csv").read_text().splitlines()
    assert [row.split(",")[1] for row in onnx_rows] == [row.split(",")[1] for row in torch_rows]
    manifest = json.loads((tmp_path / "seg-onnx" / "folder-run.json").read_text())
    assert manifest["settings"]["runtime"] == "onnx"


@pytest.mark.slow
def test_random_vit_b16_image_tower_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from clipdense.tasks.export import export_onnx
    from clipdense.tasks.onnx_runtime import ExportedModel

    torch.manual_seed(0)
    bundle = cd.load_model("ViT-B-16", device="cpu")   # random init: the graph is what is checked
    export_onnx(bundle, tmp_path, ["sclip"], text=False)
    model = ExportedModel(tmp_path)
    for shape in [(1, 3, 224, 224), (2, 3, 448, 336)]:
        images = torch.randn(*shape)
        with torch.no_grad():
            reference = encode_dense(bundle.model, images, "sclip")
        assert (model.dense(images, "sclip")[0] - reference).abs().max() < 1e-4


@pytest.mark.parametrize("argv, message", [
    (["segment", "IMG", "--classes", "a", "--runtime", "onnx"], "--runtime onnx needs --onnx DIR"),
    (["segment", "IMG", "--classes", "a", "--onnx", "x"], "--onnx: only with --runtime onnx"),
    (["classify", "IMG", "--classes", "a", "--runtime", "onnx", "--onnx", "x", "--adapter", "h"],
     "--runtime onnx: --adapter applies to the torch runtime"),
    (["segment", "IMG", "--classes", "a", "--runtime", "onnx", "--onnx", "NOWHERE"], "no export.json"),
    (["segment", "IMG", "--classes", "a", "--precision", "fp16"], "--precision fp16: GPU only"),
    (["export", "tiny-vit-t8", "--format", "onnx", "--out", "o", "--modes", "maskclip,nope"],
     "--modes 'maskclip,nope': expected comma-separated dense modes"),
    (["export", "tiny-vit-t8", "--format", "onnx", "--out", "o", "--classes", " , "], "--classes: expected a"),
])
def test_runtime_and_export_flags_one_line_errors(tmp_path, capsys, argv, message):
    image = tmp_path / "p.png"
    _picture(0, 16, 16).save(image)
    argv = [str(image) if a == "IMG" else str(tmp_path / "nowhere") if a == "NOWHERE" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_export_format_choices_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "tiny-vit-t8", "--format", "tflite", "--out", "o"])
    assert exit_info.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err


def test_exported_model_without_manifest_refused(tmp_path):
    from clipdense.tasks.onnx_runtime import ExportedModel

    with pytest.raises(ModelLoadError, match="no export.json; export one with `clipdense export"):
        ExportedModel(tmp_path)
