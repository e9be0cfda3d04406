"""The video methods: CLIP4Clip's meanP is the mean of the frame embeddings, seqTransf starts as the text
transformer, symmetric CE and ActionCLIP's KL loss by hand, CLIP's learning-rate factor in the optimiser, encode /
classify / search of clips, and (slow) each objective overfitting a handful of world clips."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import clipdense as cd
from clipdense.data.video import write_video
from clipdense.data.world.video import VideoWorldConfig, action_clip, retrieval_clip
from clipdense.data.readers import DataInfo
from clipdense.data.sample import Sample
from clipdense.errors import ConfigError, DataError
from clipdense.heads.video import VideoHead, VideoHeadConfig, mean_pool
from clipdense.objectives import build_objective
from clipdense.objectives.actionclip import actionclip_loss, kl_match, same_class_matrix
from clipdense.objectives.base import scale_lr
from clipdense.objectives.clip4clip import symmetric_ce
from clipdense.objectives.video_common import build_video_head, center_view, encode_frames
from clipdense.objectives.views import model_image_stats
from clipdense.train.optim import build_optimizer, set_lr
from resume_toy import whole_and_resumed

pytest.importorskip("av")


def test_meanp_is_the_mean_of_unit_frame_embeddings() -> None:
    frames = torch.tensor([[[3.0, 4.0], [0.0, 2.0]]])          # (1, 2 frames, D=2)
    # unit frames (.6, .8) and (0, 1): mean (.3, .9), normalised
    expected = torch.tensor([0.3, 0.9]) / math.hypot(0.3, 0.9)
    assert torch.allclose(mean_pool(frames)[0], expected)
    head = VideoHead(VideoHeadConfig(pooling="meanP", width=2))
    assert torch.equal(head.pool(frames), mean_pool(frames))


def test_encode_video_without_head_is_meanp_of_the_image_tower(tiny_bundle) -> None:
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (4, 64, 64, 3), generator=g, dtype=torch.uint8)
    size, mean, std = model_image_stats(tiny_bundle.model)
    with torch.no_grad():
        per_frame = tiny_bundle.model.encode_image(center_view(frames, size, mean, std))
    expected = F.normalize(F.normalize(per_frame, dim=-1).mean(0), dim=0)
    assert torch.allclose(cd.encode_video(tiny_bundle, frames), expected, atol=1e-6)
    with pytest.raises(DataError, match="1 frame"):
        cd.encode_video(tiny_bundle, frames[:1])


def test_seqtransf_starts_as_the_text_transformer(tiny_bundle) -> None:
    head = build_video_head(tiny_bundle, "seqTransf", 2, 16, "clip4clip", from_text=True)
    assert head.config.init == "text"
    text = tiny_bundle.model.transformer.resblocks
    for mine, theirs in zip(head.transformer.resblocks, text):
        for (name, a), (_, b) in zip(mine.state_dict().items(), theirs.state_dict().items()):
            assert torch.equal(a, b), name
    assert torch.equal(head.frame_position.weight, tiny_bundle.model.positional_embedding[:16])
    frames = torch.randn(2, 5, head.config.width)
    assert head.pool(frames).shape == (2, head.config.width)
    random = build_video_head(tiny_bundle, "seqTransf", 2, 16, "clip4clip", from_text=False)
    assert random.config.init == "random"


def test_symmetric_ce_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    rows = -(2 - math.log(math.exp(2) + 1) + 3 - math.log(math.exp(1) + math.exp(3))) / 2
    cols = -(2 - math.log(math.exp(2) + math.exp(1)) + 3 - math.log(1 + math.exp(3))) / 2
    assert symmetric_ce(logits).item() == pytest.approx((rows + cols) / 2, rel=1e-6)


def test_actionclip_kl_loss_by_hand() -> None:
    labels = torch.tensor([0, 0, 1])
    truth = same_class_matrix(labels)
    assert truth.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0], [0.5, 0.5, 0.5]])
    total = 0.0
    for i in range(3):   # KL(target_i || softmax(logits_i)), target = softmax(10 * truth_i)
        target = [math.exp(10 * t) for t in truth[i].tolist()]
        target = [t / sum(target) for t in target]
        pred = [math.exp(v) for v in logits[i].tolist()]
        pred = [p / sum(pred) for p in pred]
        total += sum(t * (math.log(t) - math.log(p)) for t, p in zip(target, pred))
    assert kl_match(logits, truth).item() == pytest.approx(total / 3, rel=1e-5)
    v = F.normalize(torch.randn(3, 4), dim=-1)
    t = F.normalize(torch.randn(3, 4), dim=-1)
    both = actionclip_loss(v, t, labels, torch.tensor(5.0))
    half = 0.5 * (kl_match(5 * v @ t.T, truth) + kl_match(5 * t @ v.T, truth))
    assert both.item() == pytest.approx(half.item(), rel=1e-6)


def test_coef_lr_puts_clip_parameters_in_their_own_groups() -> None:
    clip, head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    scale_lr(clip, 1e-3)
    params = [(f"clip.{n}", p) for n, p in clip.named_parameters()] + [(f"head.{n}", p) for n, p in
                                                                        head.named_parameters()]
    optimizer = build_optimizer(params, 0.1, 0.01, (0.9, 0.98), 1e-6, torch.device("cpu"))
    set_lr(optimizer, 0.5)
    by_param = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert by_param[id(clip.weight)] == pytest.approx(5e-4) and by_param[id(clip.bias)] == pytest.approx(5e-4)
    assert by_param[id(head.weight)] == 0.5 and by_param[id(head.bias)] == 0.5


def test_tight_head_scores_every_pair(bundle) -> None:
    # a fresh model: clip=frozen switches its gradients off
    objective = build_objective("clip4clip", bundle, {"head": "tightTransf", "layers": 1, "clip": "frozen"},
                                DataInfo())
    batch = {"video": torch.randn(3, 4, 3, 64, 64), "text": bundle.tokenizer(["a", "b c", "d e f"])}
    assert objective.logits(batch).shape == (3, 3)
    with torch.no_grad():   # pair (i, j) depends on text i and clip j alone: scoring one pair gives the same cell
        one = objective.logits({"video": batch["video"][2:3], "text": batch["text"][1:2]})
        assert torch.allclose(one[0, 0], objective.logits(batch)[1, 2], atol=1e-5)


@pytest.mark.parametrize(("name", "args", "named"), [
    ("clip4clip", {"head": "mean"}, "head=mean"),
    ("clip4clip", {"coef_lr": 0.0}, "coef_lr=0.0"),
    ("clip4clip", {"clip": "thawed"}, "clip=thawed"),
    ("clip4clip", {"layers": 0}, "layers"),
    ("clip4clip", {"max_frames": 1}, "max_frames"),
    ("actionclip", {"fusion": "tightTransf"}, "fusion=tightTransf"),
    ("actionclip", {"templates": "kinetics"}, "templates=kinetics"),
    ("actionclip", {"coef_lr": 2.0}, "coef_lr=2.0"),
])
def test_bad_objective_args_are_named(tiny_bundle, name: str, args: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        build_objective(name, tiny_bundle, args, DataInfo(classes=("grows", "spins")))


def test_actionclip_needs_class_names(tiny_bundle) -> None:
    with pytest.raises(ConfigError, match="class names"):
        build_objective("actionclip", tiny_bundle, {}, DataInfo())


def test_classify_and_search_clips(tiny_bundle, tmp_path: Path) -> None:
    cfg = VideoWorldConfig(frames=4, size=64)
    for i in range(3):
        write_video(tmp_path / f"clip{i}.mp4", retrieval_clip(cfg, "val", i).frames)
    (tmp_path / "broken.mp4").write_bytes(b"junk")
    probs = cd.classify(tiny_bundle, tmp_path / "clip0.mp4", ["moves left", "grows", "spins"])
    assert probs.shape == (3,) and probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    found = cd.search(tiny_bundle, tmp_path, "a red star moves left", top=2)
    assert len(found) == 2 and all(p.suffix == ".mp4" and p.name != "broken.mp4" for p, _ in found)
    embeddings = torch.stack([cd.encode_video(tiny_bundle, tmp_path / f"clip{i}.mp4") for i in range(3)])
    text = cd.text_classifier(tiny_bundle, ["a red star moves left"], ["{}"])[0]
    best = int((embeddings @ text).argmax())
    assert found[0][0].name == f"clip{best}.mp4"


def _clip_samples(cfg: VideoWorldConfig, count: int) -> list[Sample]:
    return [Sample(image=None, key=str(i), caption=(c := retrieval_clip(cfg, "train", i)).caption,
                   frames=torch.from_numpy(c.frames)) for i in range(count)]


def _batch(objective, samples: list[Sample]) -> dict[str, torch.Tensor]:
    transform = objective.sample_transform()
    return objective.collate([transform(s, torch.Generator().manual_seed(i)) for i, s in enumerate(samples)])


def _overfit(objective, samples: list[Sample], steps: int, lr: float) -> tuple[float, float]:
    torch.manual_seed(0)
    batch = _batch(objective, samples)
    optimizer = build_optimizer(objective.named_trainable_parameters(), lr, 0.0, (0.9, 0.98), 1e-6,
                                torch.device("cpu"))
    set_lr(optimizer, lr)
    objective.train()
    first = last = None
    for _ in range(steps):
        loss = objective(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = float(loss.detach()) if first is None else first
        last = float(loss.detach())
    return first, last


@pytest.mark.slow
@pytest.mark.parametrize("head", ["meanP", "seqLSTM", "seqTransf", "tightTransf"])
def test_clip4clip_overfits_a_handful_of_clips(head: str) -> None:
    bundle = cd.load_model("tiny-vit-t8", device="cpu")
    tight = head == "tightTransf"   # its cross encoder starts random: more steps, the CLIP slower (coef_lr)
    torch.manual_seed(0)
    objective = build_objective("clip4clip", bundle, {"head": head, "layers": 1, "coef_lr": 0.1 if tight else 1.0},
                                DataInfo())
    samples = _clip_samples(VideoWorldConfig(frames=4, size=64), 4)
    first, last = _overfit(objective, samples, 60 if tight else 30, 1e-3 if tight else 2e-3)
    assert first > 1.0 and last < 0.25 * first
    objective.eval()
    with torch.no_grad():   # every caption now retrieves its own clip
        assert torch.equal(objective.logits(_batch(objective, samples)).argmax(1), torch.arange(4))


@pytest.mark.slow
def test_actionclip_overfits_a_handful_of_clips() -> None:
    bundle = cd.load_model("tiny-vit-t8", device="cpu")
    classes = ["moves left", "grows", "spins"]
    cfg = VideoWorldConfig(frames=4, size=64)
    samples = [Sample(image=None, key=f"{c}{j}", image_label=k, frames=torch.from_numpy(action_clip(
        cfg, "train", c, j).frames)) for k, c in enumerate(classes) for j in range(2)]
    torch.manual_seed(0)
    objective = build_objective("actionclip", bundle, {"layers": 1, "templates": "world", "coef_lr": 1.0},
                                DataInfo(classes=tuple(classes)))
    first, last = _overfit(objective, samples, 40, 1e-3)
    # the KL target spreads each row over its class's two prompts, so the floor is above 0; ranking is what counts
    assert last < 0.5 * first
    objective.eval()
    batch = _batch(objective, samples)
    with torch.no_grad():
        video = objective.head.pool(encode_frames(objective.model, batch["video"]))
        text = objective.model.encode_text(batch["text"], normalize=True)
    nearest = (video @ text.T).argmax(1)
    assert torch.equal(batch["label"][nearest], batch["label"])   # each clip's best prompt names its class


@pytest.mark.slow
def test_clip4clip_resume_is_exact(tmp_path: Path) -> None:
    """A tuned-CLIP run (two learning-rate groups) stopped after its step-2 checkpoint and resumed ends bit-identical
    to an uninterrupted one: the groups' lr_scale comes back with the optimiser."""
    from clipdense.train.config import TrainConfig

    samples = _clip_samples(VideoWorldConfig(frames=4, size=64), 8)

    def config(out: Path, **more) -> TrainConfig:
        return TrainConfig(objective="clip4clip", model="tiny-vit-t8", out=str(out), steps=4, batch_size=4, lr=1e-3,
                           warmup_steps=1, log_every=1, checkpoint_every=2, keep_checkpoints=2, device="cpu", seed=0,
                           num_workers=0, objective_args={"head": "seqTransf", "layers": 1, "coef_lr": 0.1}, **more)

    full, cut, stopped_at = whole_and_resumed(config, samples, tmp_path)
    assert stopped_at == 2
    assert full.keys() == cut.keys() and any(k.startswith("clip.") for k in full)
    assert [k for k in full if not torch.equal(full[k], cut[k])] == []
