"""AudioCLIP's objective: the three-pair loss by hand and against CLIP's, the partial regime leaving every CLIP tensor
bit-identical through the engine, the head bound to its CLIP, zero-shot sound classification by hand, and bad input."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import clipdense as cd
from clipdense.data.audio import Waveform, write_wav
from clipdense.data.sample import Sample
from clipdense.data.streams import InMemorySamples
from clipdense.objectives import build_objective
from clipdense.objectives.audioclip import audioclip_loss
from clipdense.objectives.clip import contrastive_loss


def _ce_sym(a: torch.Tensor, b: torch.Tensor, scale: float) -> float:
    """(CE(rows) + CE(columns)) / 2 of scale * a b^T against the diagonal, written out."""
    logits = scale * a @ b.T
    n = len(a)
    rows = -sum(logits[i, i] - torch.logsumexp(logits[i], 0) for i in range(n)) / n
    cols = -sum(logits[i, i] - torch.logsumexp(logits[:, i], 0) for i in range(n)) / n
    return float((rows + cols) / 2)


def test_three_pair_loss_by_hand_and_equal_to_clip_with_image_and_text_only() -> None:
    # two samples in 2-D: audio at 0 and 90 degrees, images at 0 and 60, text at 30 and 90
    deg = lambda *a: torch.tensor([[math.cos(math.radians(x)), math.sin(math.radians(x))] for x in a])
    audio, image, text = deg(0, 90), deg(0, 60), deg(30, 90)
    scales = {"audio_image": torch.tensor(10.0), "audio_text": torch.tensor(5.0), "image_text": torch.tensor(20.0)}
    out = audioclip_loss({"audio": audio, "image": image, "text": text}, scales)

    # audio-image by hand: logits 10 * [[1, .5], [0, .866]]
    c60 = math.cos(math.radians(60))
    s60 = math.sin(math.radians(60))
    rows = (-(10 - math.log(math.exp(10) + math.exp(10 * c60))) - (10 * s60 - math.log(1 + math.exp(10 * s60)))) / 2
    cols = (-(10 - math.log(math.exp(10) + 1)) - (10 * s60 - math.log(math.exp(10 * c60) + math.exp(10 * s60)))) / 2
    assert float(out["audio_image_loss"]) == pytest.approx((rows + cols) / 2, rel=1e-6)
    assert float(out["audio_text_loss"]) == pytest.approx(_ce_sym(audio, text, 5.0), rel=1e-6)
    assert float(out["image_text_loss"]) == pytest.approx(_ce_sym(image, text, 20.0), rel=1e-6)
    expected = (float(out["audio_image_loss"]) + float(out["audio_text_loss"]) + float(out["image_text_loss"])) / 3
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-6)

    g = torch.Generator().manual_seed(0)
    img, txt = F.normalize(torch.randn(6, 8, generator=g), dim=-1), F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    only = audioclip_loss({"image": img, "text": txt}, {"image_text": torch.tensor(14.0)})
    assert torch.allclose(only["loss"], contrastive_loss(img, txt, torch.tensor(14.0)), atol=1e-6)
    assert set(only) == {"loss", "image_text_loss"}
    with pytest.raises(cd.ConfigError, match="no pair of modalities"):
        audioclip_loss({"audio": audio}, scales)


def _triplets(n: int = 4) -> list[Sample]:
    """n distinct (image, caption, sound) triplets: a flat colour, its name, a tone of its own pitch."""
    colours = [("red", (220, 30, 30), 220.0), ("blue", (30, 60, 220), 440.0), ("green", (30, 180, 40), 660.0),
               ("yellow", (240, 220, 30), 880.0), ("purple", (140, 50, 180), 1100.0)]
    out = []
    for name, rgb, hz in colours[:n]:
        t = np.arange(32000) / 16000
        sound = torch.from_numpy((0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32))
        out.append(Sample(image=Image.new("RGB", (32, 32), rgb), key=name, caption=f"a {name} square",
                          audio=Waveform(sound, 16000)))
    return out


def _config(out: Path, steps: int, **args: object):
    from clipdense.train.config import TrainConfig
    return TrainConfig(objective="audioclip", model="tiny-vit-t8", out=str(out), steps=steps, batch_size=4, lr=3e-3,
                       warmup_steps=1, checkpoint_every=steps, keep_checkpoints=1, num_workers=0,
                       objective_args={"noise_snr": (0.0, 0.0), **args})


def test_partial_regime_leaves_every_clip_tensor_bit_identical(bundle, tmp_path: Path) -> None:
    from clipdense.heads import load_head, read_head_info
    from clipdense.train.run import run_training
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    run_training(_config(tmp_path / "run", 3), source=InMemorySamples(_triplets()), bundle=bundle)
    after = bundle.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    info = read_head_info(tmp_path / "run")
    assert info.kind == "audio/audioclip" and info.config["full"] is False and info.config["tower"]["frontend"] == "fbsp"
    head = load_head(tmp_path / "run", bundle)
    assert head.clip is None and not any(k.startswith("clip.") for k in head.state_dict())
    other = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    with pytest.raises(cd.ModelLoadError, match="audio/audioclip head was trained on"):
        load_head(tmp_path / "run", other)


def test_full_regime_trains_the_clip_and_carries_it_in_the_head(tmp_path: Path) -> None:
    local = cd.load_model("tiny-vit-t8", device="cpu")
    objective = build_objective("audioclip", local, {"regime": "full"})
    trainable = {n for n, _ in objective.named_trainable_parameters()}
    assert any(n.startswith("model.visual") for n in trainable) and any("tower" in n for n in trainable)
    assert objective.frozen_modules() == ()
    partial = build_objective("audioclip", cd.load_model("tiny-vit-t8", device="cpu"), {"regime": "partial"})
    assert all(not n.startswith("model.") for n, _ in partial.named_trainable_parameters())
    with pytest.raises(cd.ConfigError, match="regime=half"):
        build_objective("audioclip", local, {"regime": "half"})
    with pytest.raises(cd.ConfigError, match="--lock-image-blocks"):
        partial.lock_blocks(1, 0)


@pytest.mark.slow
def test_objective_overfits_a_handful_of_triplets(bundle, tmp_path: Path) -> None:
    """Four triplets, 60 steps of the partial regime: sounds find their own pictures and captions."""
    from clipdense.heads import load_head
    from clipdense.train.run import run_training
    samples = _triplets(4)
    run_training(_config(tmp_path / "fit", 60, crop_scale=(1.0, 1.0), gain_db=(0.0, 0.0), shift=0.0),
                 source=InMemorySamples(samples), bundle=bundle)
    head = load_head(tmp_path / "fit", bundle)
    from clipdense.tasks.audio import encode_audio
    audio = torch.stack([encode_audio(bundle, s.audio, head=head) for s in samples])
    text = F.normalize(bundle.model.encode_text(bundle.tokenizer([s.caption for s in samples])).float(), dim=-1)
    assert (audio @ text.T).argmax(dim=1).tolist() == [0, 1, 2, 3]


def test_classify_a_sound_equals_the_softmax_by_hand_and_bad_input_is_one_line(bundle, tmp_path: Path) -> None:
    from clipdense.tasks.audio import classify_audio, encode_audio, use_audio_tower
    from clipdense.heads.audio import AudioHead
    from clipdense.models.audio import build_audio_tower
    head = AudioHead(build_audio_tower("tiny", embed_dim=bundle.model.text_projection.shape[1], seed=3)).eval()
    sound = _triplets(1)[0].audio
    write_wav(tmp_path / "a.wav", sound.samples, 16000)
    with pytest.raises(cd.ConfigError, match="no audio tower for tiny-vit-t8"):
        cd.classify(bundle, tmp_path / "a.wav", ["x", "y"])
    use_audio_tower(bundle, head)
    classes = ["a red square", "a blue square", "noise"]
    probs = cd.classify(bundle, tmp_path / "a.wav", classes, templates="plain")
    emb = encode_audio(bundle, cd.read_audio(tmp_path / "a.wav"))
    text = F.normalize(bundle.model.encode_text(bundle.tokenizer(classes)).float(), dim=-1)
    scale = float(head.logit_scale_audio_text.detach().exp())
    assert torch.allclose(probs, (scale * emb @ text.T).softmax(-1), atol=1e-5)
    assert torch.allclose(probs, classify_audio(bundle, cd.read_audio(tmp_path / "a.wav"), classes, "plain"),
                          atol=1e-6)
    (tmp_path / "not.wav").write_text("hello")
    with pytest.raises(cd.DataError, match="not.wav: not a readable sound file"):
        cd.classify(bundle, tmp_path / "not.wav", classes)
    write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(cd.DataError, match="silent.wav: silent sound"):
        cd.classify(bundle, tmp_path / "silent.wav", classes)
    long = torch.from_numpy(np.tile(sound.samples.numpy(), 3))   # 6 s: three windows, the mean of their embeddings
    assert encode_audio(bundle, long, 16000).shape == emb.shape


def test_in_the_partial_regime_the_image_text_term_moves_nothing(bundle) -> None:
    """The frozen CLIP's image-text loss has no trainable input, so the tower's gradient is the same without it."""
    torch.manual_seed(0)
    batch = {"image": torch.randn(3, 3, 64, 64), "text": bundle.tokenizer(["a", "b c", "d"]),
             "audio": 0.1 * torch.randn(3, 32000)}
    grads = []
    for image_text in (True, False):
        objective = build_objective("audioclip", bundle, {"image_text": image_text, "tower_seed": 5}).train()
        out = objective(batch)
        out["loss"].backward()
        assert ("image_text_loss" in out) is image_text
        weight = 3 / 2 if image_text else 1.0   # the mean over 3 pairs vs over 2
        grads.append({n: p.grad * weight for n, p in objective.head.named_parameters()})
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])


@pytest.mark.slow
def test_resume_is_exact(bundle, tmp_path: Path) -> None:
    """4 steps in one go == 2 steps, then --resume to 4: the same tower, bit for bit (seeded sound augmentation)."""
    from clipdense.heads import load_head
    from clipdense.train.run import run_training
    samples = _triplets(4)
    args = {"noise_snr": (10.0, 30.0)}
    run_training(_config(tmp_path / "whole", 4, **args), source=InMemorySamples(samples), bundle=bundle)
    cut = _config(tmp_path / "cut", 4, **args)
    cut.checkpoint_every = 2
    run_training(type(cut)(**{**vars(cut), "steps": 2}), source=InMemorySamples(samples), bundle=bundle)
    run_training(type(cut)(**{**vars(cut), "resume": str(tmp_path / "cut")}), source=InMemorySamples(samples),
                 bundle=bundle)
    whole, resumed = (load_head(tmp_path / run, bundle).state_dict() for run in ("whole", "cut"))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
