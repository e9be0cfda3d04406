"""`clipdense demo video`: text-video retrieval on the video world (about two minutes on 2 cores).

A small video world is written (MSR-VTT layout); CLIP4Clip's seqTransf head is trained on the shipped tiny CLIP
(`tiny-vit-t8` / `synthworld`, the CLIP at a tenth of the learning rate) and scored on the val clips and on the order
split, beside the untrained CLIP's meanP; four val clips are drawn as frame strips with the captions they retrieve.
Everything goes to ``out``: the world, the run, the strips and ``report.md``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.formats.video import MsrvttClips
from ..data.video import FrameSampling
from ..data.world.video import VideoWorldConfig
from ..data.world.video_writer import write_video_world
from ..evaluation.video import rank_metrics
from ..heads import load_head
from ..models import load_model
from ..tasks.video import encode_videos
from ..train.config import TrainConfig
from ..train.run import run_training

WORLD = VideoWorldConfig(train=160, val=40, order_pairs=20, per_action=1, frames=8, size=64, seed=11)
STEPS = 120
SHOWN = 4


def _strip(frames: torch.Tensor) -> Image.Image:
    """The clip's frames side by side."""
    return Image.fromarray(np.concatenate(list(frames.numpy()), axis=1)).resize(
        (frames.shape[0] * 64, 64), Image.NEAREST)


@torch.no_grad()
def _scores(bundle, head, reader: MsrvttClips) -> tuple[torch.Tensor, dict[str, float]]:
    samples = [reader[i] for i in range(len(reader))]
    model = head.clip_model(bundle) if head is not None else bundle.model
    videos = encode_videos(bundle, [s.frames for s in samples], head)
    text = F.normalize(model.encode_text(bundle.tokenizer([s.caption for s in samples])).float(), dim=-1)
    similarity = text @ videos.T
    return similarity, rank_metrics(similarity)


def run_video_demo(out: Path, log: Callable[[str], None]) -> Path:
    """World -> clip4clip (seqTransf) -> retrieval with and without it, plain and order split -> report.md."""
    out.mkdir(parents=True, exist_ok=True)
    world = out / "world"
    if not (world / "video.json").is_file():
        write_video_world(world, WORLD)
    log(f"video world: {world}")
    data = f"msrvtt:root={world / 'msrvtt'},frames={WORLD.frames}"
    run, start = out / "run", time.perf_counter()
    config = TrainConfig(objective="clip4clip", data=data, model="tiny-vit-t8", pretrained="synthworld",
                         out=str(run), steps=STEPS, batch_size=16, lr=1e-3, warmup_steps=10, checkpoint_every=STEPS,
                         log_every=40, seed=0, device="cpu", num_workers=0,
                         objective_args={"head": "seqTransf", "layers": 2, "coef_lr": 0.1})
    if not (run / "checkpoints").is_dir():
        run_training(config)
    seconds = time.perf_counter() - start
    log(f"trained clip4clip seqTransf ({STEPS} steps) in {seconds:.0f} s")
    bundle = load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    head = load_head(run, bundle).eval()
    sampling = FrameSampling(WORLD.frames)
    val = MsrvttClips(world / "msrvtt", "val", sampling=sampling)
    order = MsrvttClips(world / "msrvtt", "val", test="order_test.csv", sampling=sampling)
    rows = []
    for name, used in (("shipped CLIP, meanP (untrained)", None), ("clip4clip seqTransf", head)):
        (_, plain), (_, swapped) = _scores(bundle, used, val), _scores(bundle, used, order)
        rows.append(f"| {name} | {plain['R@1']:.1f} | {plain['R@5']:.1f} | {plain['MdR']:.0f} | "
                    f"{swapped['R@1']:.1f} | {swapped['R@5']:.1f} |")
        log(f"{name}: val R@1 {plain['R@1']:.1f}, order-split R@1 {swapped['R@1']:.1f}")
    similarity, _ = _scores(bundle, head, val)
    pictures = ["| clip (frames left to right) | its caption | captions it retrieves (video -> text, top 3) |",
                "|---|---|---|"]
    for i in range(SHOWN):
        sample = val[i]
        _strip(sample.frames).save(out / f"clip-{i}.png")
        top = similarity[:, i].topk(3).indices.tolist()
        found = "<br>".join(("**" if j == i else "") + val.pairs[j].sentence + ("**" if j == i else "") for j in top)
        pictures.append(f"| ![clip {i}](clip-{i}.png) | {sample.caption} | {found} |")
    report = out / "report.md"
    report.write_text("\n".join([
        "# Text-video retrieval (CLIP4Clip)", "",
        f"CLIP4Clip's seqTransf head (2 blocks started from the text transformer) on the shipped tiny CLIP, trained "
        f"{STEPS} steps on {WORLD.train} clips of {WORLD.frames} frames in {seconds:.0f} s; scored on {len(val)} val "
        f"clips and on the order split ({len(order)} clips: each pair holds the same two events in both orders, "
        "which an average of frames cannot tell apart).", "",
        "| model | val t→v R@1 | R@5 | MdR | order split t→v R@1 | R@5 |", "|---|---|---|---|---|---|", *rows, "",
        *pictures, "", "The right caption is in bold.", ""]))
    log(f"report: {report}")
    return report
