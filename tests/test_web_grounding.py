"""The page's grounding mode (issue 26): a GLIP head among the page's heads grounds the typed sentence, and the
page shows what ``cd.ground`` finds (each phrase's best boxes, named by the phrase)."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

import clipdense as cd
from clipdense.heads import save_head
from clipdense.heads.grounding import GLIPConfig, GLIPHead
from clipdense.tasks.ground import keep_best
from clipdense.web import Analyser, Request, discover_heads, render

TINY = dict(channels=32, layers=1, fusion_dim=32, fusion_heads=4, layer_scale=0.1, image_size=64,
            score_threshold=0.0)


SENTENCE = "a red circle left of a blue star"


def _page_grounding(tmp_path, bundle, head):
    """Save ``head``, find it as the page does, ground SENTENCE on a red photo -> (the head's choice, the page's
    result, the photo)."""
    save_head(head, tmp_path / "heads" / "glip.safetensors", bundle)
    (choice,) = discover_heads([tmp_path / "heads"])
    photo = tmp_path / "photo.png"
    Image.new("RGB", (48, 40), (200, 30, 30)).save(photo)
    result = Analyser([choice], device="cpu")(Request(photo, "red circle, sky", pretrained=None, templates="world",
                                                       head=str(choice.path), heatmap=SENTENCE))
    return choice, result, photo


def test_the_page_grounds_the_typed_sentence_with_a_glip_head(tmp_path, tiny_bundle, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)
    head = GLIPHead(tiny_bundle, GLIPConfig(**TINY))
    choice, result, photo = _page_grounding(tmp_path, tiny_bundle, head)
    assert choice.use.name == "grounding" and choice.info.kind == "grounder/glip"
    expected = keep_best(cd.ground(tiny_bundle, photo, SENTENCE, head=head), top=2)
    assert result.detections is not None and result.probabilities is None
    assert result.detections.classes == ["red circle", "blue star"]
    assert torch.equal(result.detections.labels, torch.cat([torch.full((len(p.boxes),), i)
                                                             for i, p in enumerate(expected.phrases)]))
    assert torch.allclose(result.detections.boxes, torch.cat([p.boxes for p in expected.phrases]), atol=1e-4)
    assert len(result.detections.boxes) == 4 and any("grounded the sentence" in n for n in result.notes)
    view = render(result, min_score=0.0)
    assert {row["class"] for row in view.detections} == {"red circle", "blue star"}
    assert view.overlay.size == (48, 40)


def test_the_page_refuses_a_sentence_without_a_noun_phrase_for_a_glip_head(tmp_path, tiny_bundle, monkeypatch):
    from clipdense.errors import ConfigError
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)
    save_head(GLIPHead(tiny_bundle, GLIPConfig(**TINY)), tmp_path / "heads" / "glip.safetensors", tiny_bundle)
    (choice,) = discover_heads([tmp_path / "heads"])
    photo = tmp_path / "photo.png"
    Image.new("RGB", (48, 40)).save(photo)
    with pytest.raises(ConfigError, match="no noun phrase"):
        Analyser([choice], device="cpu")(Request(photo, "sky", pretrained=None, head=str(choice.path),
                                                 heatmap="it is on the left"))


def test_ground_maps_boxes_back_to_the_image_whatever_the_head_mode(tiny_bundle):
    """A head left in training mode (as right after training) still answers in the given image's pixels."""
    torch.manual_seed(0)
    head = GLIPHead(tiny_bundle, GLIPConfig(**TINY))
    image = torch.rand(3, 40, 48)
    head.train()
    trained = cd.ground(tiny_bundle, image, "a red circle", head=head)
    head.eval()
    evaluated = cd.ground(tiny_bundle, image, "a red circle", head=head)
    assert torch.allclose(trained.phrases[0].boxes, evaluated.phrases[0].boxes)
    assert float(trained.phrases[0].boxes[:, 0::2].max()) <= 48 and head.training is False


def test_the_page_tints_the_masks_of_a_glipv2_mask_head(tmp_path, tiny_bundle, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)
    head = GLIPHead(tiny_bundle, GLIPConfig(**TINY, mask_head=True))
    _, result, photo = _page_grounding(tmp_path, tiny_bundle, head)
    expected = keep_best(cd.ground(tiny_bundle, photo, SENTENCE, head=head), top=2)
    assert all(p.masks is not None and p.masks.shape[1:] == (40, 48) for p in expected.phrases)
    assert torch.equal(result.detections.masks, torch.cat([p.masks for p in expected.phrases]))
    plain = render(result, min_score=0.0).overlay
    without = render(type(result)(**{**result.__dict__, "detections": type(result.detections)(
        *[getattr(result.detections, k) for k in ("boxes", "scores", "labels", "classes")])}), min_score=0.0).overlay
    assert bool(result.detections.masks.any())         # a random head's masks: about half the box
    assert plain.tobytes() != without.tobytes()        # a tinted mask changes the overlay's pixels
    found = cd.ground(tiny_bundle, photo, SENTENCE, head=head).to_json()
    assert all(len(p["segmentations"]) == len(p["boxes"]) for p in found["phrases"])
    assert found["phrases"][0]["segmentations"][0]["size"] == [40, 48]
