"""segment / classify / text classifiers and the CLI around them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import clipdense as cd
from clipdense.cli.main import main
from clipdense.models.text import resolve_templates


def _picture(path):
    Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype("uint8")).save(path)
    return path


def test_text_classifier_is_unit_norm_ensemble(tiny_bundle):
    emb = cd.text_classifier(tiny_bundle, ["red circle", "sky"], templates=["a {}", "the {}"])
    assert emb.shape == (2, 64)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    single = cd.text_classifier(tiny_bundle, ["red circle"], templates="a {}")
    assert (single - emb[:1]).abs().max() > 1e-4
    assert len(resolve_templates("imagenet")) == 80
    with pytest.raises(cd.ConfigError):
        resolve_templates("no placeholder")


def test_segment_matches_manual_argmax(tiny_bundle, tmp_path):
    image = Image.open(_picture(tmp_path / "p.png"))
    labels = cd.segment(tiny_bundle, image, ["a", "b", "c"], mode="maskclip", templates="plain", short_side=64)
    assert labels.shape == (40, 56) and labels.dtype == torch.int64
    from clipdense.tasks.images import dense_input
    x = dense_input(tiny_bundle.model, image, 64)
    logits = torch.einsum("bdhw,cd->bchw", cd.encode_dense(tiny_bundle.model, x, "maskclip"),
                          cd.text_classifier(tiny_bundle, ["a", "b", "c"], "plain"))
    coarse = logits.argmax(1)[0]
    assert set(labels.unique().tolist()) <= set(coarse.unique().tolist())
    bg = cd.segment(tiny_bundle, image, ["a", "b", "c"], templates="plain", background_threshold=1.0)
    assert (bg == -1).all()


def test_classify_is_softmax_of_scaled_cosines_one_image_at_a_time(tiny_bundle, tmp_path):
    """Each image's probabilities are softmax(logit_scale * cos(image embedding, class embeddings)), by hand."""
    classes = ["red circle", "blue square", "sky"]
    rng = np.random.default_rng(1)
    pictures = [Image.fromarray((rng.random((40, 56, 3)) * 255).astype("uint8")),
                Image.new("RGB", (56, 40), (200, 30, 30))]
    tensors = [tiny_bundle.preprocess(p) for p in pictures]
    text = cd.text_classifier(tiny_bundle, classes, "plain")
    scale = float(tiny_bundle.model.logit_scale.detach().exp())
    results = []
    for picture, tensor in zip(pictures, tensors):
        with torch.no_grad():
            embedding = torch.nn.functional.normalize(tiny_bundle.model.encode_image(tensor[None]).float(), dim=-1)[0]
        expected = (scale * (text @ embedding)).softmax(-1)
        torch.testing.assert_close(cd.classify(tiny_bundle, tensor, classes, templates="plain"), expected)
        torch.testing.assert_close(cd.classify(tiny_bundle, picture, classes, templates="plain"), expected)
        results.append(expected)
    assert (results[0] - results[1]).abs().max() > 1e-3      # two different images, two different answers
    with pytest.raises(cd.ConfigError) as refused:
        cd.classify(tiny_bundle, torch.stack(tensors), classes, templates="plain")
    assert str(refused.value) == "classify takes one image; got a batch of 2 — call it once per image"


def test_segment_refuses_a_batch(tiny_bundle):
    with pytest.raises(cd.ConfigError) as refused:
        cd.segment(tiny_bundle, torch.zeros(3, 3, 32, 32), ["a", "b"], templates="plain")
    assert str(refused.value) == "segment takes one image; got a batch of 3 — call it once per image"
    with pytest.raises(cd.ConfigError, match=r"got shape \(32, 32\)"):
        cd.classify(tiny_bundle, torch.zeros(32, 32), ["a", "b"], templates="plain")
    single = cd.segment(tiny_bundle, torch.zeros(1, 3, 32, 32), ["a", "b"], templates="plain")
    assert single.shape == (32, 32)


def test_cli_segment_writes_overlay_and_labels(tmp_path, capsys):
    image = _picture(tmp_path / "p.png")
    out = tmp_path / "o" / "overlay.png"
    assert main(["segment", str(image), "--classes", "a,b", "--model", "tiny-vit-t8", "--out", str(out),
                 "--device", "cpu"]) == 0
    labels = np.array(Image.open(tmp_path / "o" / "overlay_labels.png"))
    assert labels.shape == (40, 56) and set(np.unique(labels)) <= {0, 1}
    assert Image.open(out).size[1] > 40  # legend strip under the picture


@pytest.mark.parametrize("argv, message", [
    (["classify", "missing.png", "--classes", "a"], "no such image file"),
    (["segment", "IMAGE", "--classes", " , "], "--classes"),
    (["classify", "IMAGE", "--classes", "a", "--model", "nope-model"], "unknown model"),
    (["classify", "BAD", "--classes", "a"], "not a readable image"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    names = {"IMAGE": str(_picture(tmp_path / "p.png")), "BAD": str(tmp_path / "bad.png")}
    assert main([names.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_cli_unknown_mode_is_rejected_by_the_parser(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(_picture(tmp_path / "p.png")), "--classes", "a", "--mode", "nope"])
    assert exc.value.code == 2
