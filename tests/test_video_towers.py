"""The video methods on EVA02-style and SigLIP-style timm towers (small random-init configs): clip4clip and
actionclip take a training step that moves the head, seqTransf starts random where the widths differ from the text
transformer's (and says so), and encode_video is the meanP of the tower's frame embeddings."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import clipdense as cd
from clipdense.data.readers import DataInfo
from clipdense.data.sample import Sample
from clipdense.objectives import build_objective
from clipdense.objectives.video_common import build_video_head, center_view
from clipdense.objectives.views import model_image_stats

sys.path.insert(0, str(Path(__file__).parent))
from dense_towers import tiny_timm_clip  # noqa: E402

pytest.importorskip("av")
KINDS = ("eva02", "siglip")


def _samples(n: int) -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    return [Sample(image=None, key=str(i), caption=f"a shape {i} grows", image_label=i % 2,
                   frames=torch.randint(0, 256, (4, 48, 48, 3), generator=g, dtype=torch.uint8)) for i in range(n)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("name", "args"), [("clip4clip", {"head": "seqTransf", "layers": 1}),
                                            ("actionclip", {"layers": 1, "templates": "world"})])
def test_video_objective_steps_on_a_timm_tower(kind: str, name: str, args: dict) -> None:
    bundle = tiny_timm_clip(kind)
    objective = build_objective(name, bundle, args, DataInfo(classes=("grows", "spins")))
    transform = objective.sample_transform()
    batch = objective.collate([transform(s, torch.Generator().manual_seed(i)) for i, s in enumerate(_samples(4))])
    objective.train()
    head = [p for n, p in objective.head.named_parameters() if not n.startswith("clip.")]
    before = [p.detach().clone() for p in head]
    loss = objective(batch)["loss"]
    assert math.isfinite(float(loss.detach()))
    loss.backward()
    torch.optim.SGD([p for p in objective.parameters() if p.requires_grad], lr=0.1).step()
    assert any(not torch.equal(a, b) for a, b in zip(before, head))



@pytest.mark.parametrize(("kind", "init"), [("eva02", "text"), ("siglip", "random")])
def test_seqtransf_start_on_a_timm_tower(kind: str, init: str) -> None:
    """EVA02's text tower (CustomTextCLIP.text) is as wide as the joint space: seqTransf starts as its blocks;
    SigLIP's is narrower than its joint space here (32 vs 48): random, and the head says so."""
    bundle = tiny_timm_clip(kind)
    head = build_video_head(bundle, "seqTransf", 1, 8, "clip4clip", from_text=True)
    assert head.config.init == init
    if init == "text":
        theirs = bundle.model.text.transformer.resblocks[0].state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in head.transformer.resblocks[0].state_dict().items())
        assert torch.equal(head.frame_position.weight, bundle.model.text.positional_embedding[:8])


@pytest.mark.parametrize("kind", KINDS)
def test_encode_video_on_a_timm_tower(kind: str) -> None:
    bundle = tiny_timm_clip(kind)
    frames = _samples(1)[0].frames
    size, mean, std = model_image_stats(bundle.model)
    with torch.no_grad():
        per_frame = F.normalize(bundle.model.encode_image(center_view(frames, size, mean, std).to(bundle.device)),
                                dim=-1)
    assert torch.allclose(cd.encode_video(bundle, frames), F.normalize(per_frame.mean(0), dim=0).cpu(), atol=1e-5)
