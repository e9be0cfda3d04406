"""Video on the video world (issue 28): CLIP4Clip's heads and ActionCLIP on the shipped tiny CLIP (`tiny-vit-t8` /
`synthworld`), three seeds a row, and the decoder's speed.

Measured: text->video R@1/R@5/MdR on the val clips (1k-A style list) and on the order split (pairs of clips with the
same two events in both orders: frame averaging sees nearly the same frames) and each caption's clip against its
order-swapped twin alone (twin accuracy), for meanP / seqTransf / tightTransf;
ActionCLIP's top-1 on the seen motions and zero-shot on the held-out ones (beside chance); the shipped CLIP's
zero-shot meanP as the untrained baseline; PyAV's decode of a 16-frame 128-px clip. Every stage is a `clipdense`
command, run as written, timed and recorded in OUT/results.json (a re-run skips stages whose outputs exist).

    OMP_NUM_THREADS=1 python bench/video.py --out runs/video/bench          # the measured recipe (CPU)
    OMP_NUM_THREADS=1 python bench/video.py --out /tmp/video-smoke --smoke  # tiny sizes: the pipeline
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from staged import main_for

MODEL = "--model tiny-vit-t8 --pretrained synthworld --device cpu"
SIZES = {"full": {"clips": 240, "steps": 150, "batch": 16, "seeds": 3, "frames": 8},
         "smoke": {"clips": 16, "steps": 2, "batch": 4, "seeds": 1, "frames": 4}}
HEADS = ("meanP", "seqTransf", "tightTransf")
#: the CLIP's learning-rate factor in these runs: the paper's 1e-3 leaves a CLIP that never read a motion verb where
#: it is (meanP would then be the untrained CLIP); 0.1 lets it learn the words, the same for every head
COEF_LR = 0.1
#: the order split's clips come in order-swapped twins: score each caption's clip against its twin alone too
TWINS = " --task-arg video-retrieval.twins=true"


def _world(out: Path) -> Path:
    return out / "world" / "video"


def stages(out: Path, s: dict) -> list[tuple[str, str, Path]]:
    """(name, command, output that marks it done), in order."""
    world, frames = _world(out), s["frames"]
    msrvtt = f"msrvtt:root={world / 'msrvtt'},frames={frames}"
    kinetics = f"kinetics:root={world / 'kinetics'},frames={frames}"
    order = f"{msrvtt},test=order_test.csv"
    common = (f"--steps {s['steps']} --batch-size {s['batch']} --lr 1e-3 --warmup-steps {max(1, s['steps'] // 10)} "
              f"--checkpoint-every {s['steps']} --log-every 50 --num-workers 0")
    found = [("world", f"clipdense data synth --out {out / 'world'} --train 4 --val 2 --image-size 64 "
                       f"--classify-train-per-class 0 --classify-val-per-class 0 --video --video-clips {s['clips']}",
              world / "video.json"),
             ("baseline val", f"clipdense eval {MODEL} --data {msrvtt} --tasks video-retrieval --out "
                              f"{out / 'baseline-val.json'}", out / "baseline-val.json"),
             ("baseline order", f"clipdense eval {MODEL} --data {order} --tasks video-retrieval{TWINS} --out "
                                f"{out / 'baseline-order.json'}", out / "baseline-order.json"),
             ("baseline action", f"clipdense eval {MODEL} --data {kinetics} --tasks action --task-arg "
                                 f"action.templates=world --out {out / 'baseline-action.json'}",
              out / "baseline-action.json")]
    for seed in range(s["seeds"]):
        for head in HEADS:
            run = out / f"{head}-s{seed}"
            found += [(f"train {run.name}", f"clipdense train --objective clip4clip {MODEL} --data {msrvtt} "
                                           f"--out {run} {common} --seed {seed} --objective-arg head={head} "
                                           f"--objective-arg coef_lr={COEF_LR} --objective-arg layers=2",
                       run / "metrics.jsonl")]
            for split, data, extra in (("val", msrvtt, ""), ("order", order, TWINS)):
                found.append((f"eval {run.name} {split}", f"clipdense eval {MODEL} --data {data} --tasks "
                              f"video-retrieval{extra} --head {run} --out {run / f'{split}.json'}",
                              run / f"{split}.json"))
        run = out / f"actionclip-s{seed}"
        found += [(f"train {run.name}", f"clipdense train --objective actionclip {MODEL} --data {kinetics} --out {run} "
                                       f"{common} --seed {seed} --objective-arg templates=world --objective-arg "
                                       f"coef_lr={COEF_LR} --objective-arg layers=2", run / "metrics.jsonl"),
                  (f"eval {run.name}", f"clipdense eval {MODEL} --data {kinetics} --tasks action --task-arg "
                                       f"action.templates=world --head {run} --out {run / 'action.json'}",
                   run / "action.json")]
    return found


def _task(path: Path, task: str) -> dict:
    return json.loads(path.read_text())["tasks"][task]


def _cell(values: list[float], digits: int = 1) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(out: Path, record: dict, sizes: dict) -> str:
    """Retrieval rows (baseline + each head, mean ± sd over seeds), then the action rows."""
    lines = ["| head | seeds | train s (each) | val t→v R@1 | val R@5 | val MdR | order t→v R@1 | order R@5 | "
             "order MdR | twin t→v | twin v→t |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    seconds = record.get("seconds", {})
    if (out / "baseline-order.json").is_file():
        val, order = _task(out / "baseline-val.json", "video-retrieval"), _task(out / "baseline-order.json",
                                                                                 "video-retrieval")
        v, o, t = val["text_to_video"], order["text_to_video"], order.get("twin_accuracy", {})
        lines.append(f"| shipped CLIP, meanP, untrained | - | - | {v['R@1']:.1f} | {v['R@5']:.1f} | {v['MdR']:.0f} | "
                     f"{o['R@1']:.1f} | {o['R@5']:.1f} | {o['MdR']:.0f} | {t.get('text_to_video', float('nan')):.1f} | "
                     f"{t.get('video_to_text', float('nan')):.1f} |")
    for head in HEADS:
        runs = [out / f"{head}-s{seed}" for seed in range(sizes["seeds"])]
        runs = [r for r in runs if (r / "order.json").is_file()]
        if not runs:
            continue
        v = [_task(r / "val.json", "video-retrieval")["text_to_video"] for r in runs]
        o = [_task(r / "order.json", "video-retrieval")["text_to_video"] for r in runs]
        train_s = statistics.mean(seconds.get(f"train {r.name}", float("nan")) for r in runs)
        t = [_task(r / "order.json", "video-retrieval").get("twin_accuracy", {}) for r in runs]
        twin = [_cell([x.get(k, float("nan")) for x in t]) for k in ("text_to_video", "video_to_text")]
        lines.append(f"| clip4clip {head} | {len(runs)} | {train_s:.0f} | " + " | ".join(
            _cell([m[k] for m in ms], 0 if k == "MdR" else 1) for ms in (v, o) for k in ("R@1", "R@5", "MdR"))
            + f" | {twin[0]} | {twin[1]} |")
    lines += ["", "| model | seeds | seen top-1 | zero-shot top-1 among held-out | chance | "
              "zero-shot top-1 among all |",
              "|---|---|---|---|---|---|"]
    rows = [("shipped CLIP, meanP, untrained", [out / "baseline-action.json"])]
    rows.append(("actionclip (seqTransf fusion)", [out / f"actionclip-s{s}" / "action.json"
                                                   for s in range(sizes["seeds"])]))
    for name, paths in rows:
        found = [_task(p, "action") for p in paths if p.is_file()]
        if not found or "zero_shot" not in found[0]:
            continue
        z = [f["zero_shot"] for f in found]
        lines.append(f"| {name} | {len(found)} | {_cell([f.get('seen_top1', float('nan')) for f in found])} | "
                     f"{_cell([x['top1_among_novel'] for x in z])} | {z[0]['chance']:.1f} | "
                     f"{_cell([x['top1_all_classes'] for x in z])} |")
    return "\n".join(lines)


def decode_speed(repeats: int = 20) -> str:
    """PyAV: write a 16-frame 128 x 128 clip of the world (MPEG-4), then time reading it back (all 16 frames,
    uniform sampling) ``repeats`` times; milliseconds per clip and decoded frames per second."""
    import numpy as np
    import torch
    from clipdense.data.video import FrameSampling, read_video, write_video
    from clipdense.data.world.video import VideoWorldConfig, retrieval_clip
    torch.set_num_threads(1)
    clip = retrieval_clip(VideoWorldConfig(frames=16, size=128, sequence_fraction=1.0), "val", 0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        write_video(path, np.asarray(clip.frames), fps=8)
        read_video(path, FrameSampling(16))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            read_video(path, FrameSampling(16))
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return (f"| PyAV {__import__('av').__version__}, 16 frames 128 x 128 MPEG-4, uniform 16 | {repeats} | "
            f"{1000 * median:.1f} ms | {16 / median:.0f} frames/s |")


if __name__ == "__main__":
    code = main_for(__doc__, "runs/video/bench", SIZES, stages, table)
    print("\n| decode | repeats | median per clip | throughput |\n|---|---|---|---|\n" + decode_speed(
        3 if "--smoke" in sys.argv else 20))
    sys.exit(code)
