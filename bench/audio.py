"""AudioCLIP on the sounding world (issue 29): an audio tower trained beside the shipped tiny CLIP (`tiny-vit-t8` /
`synthworld`), rows = partial vs full regime, FBSP vs log-mel front end, with vs without the image-text term; three
seeds for every row.

Measured: zero-shot sound classification with text prompts on the world's single-object sounds in the ESC-50 layout
(top-1 per fold, mean over the 5 folds), and audio->image / audio->text R@1 and R@5 among the val scenes.
Every stage is a `clipdense` command, run as written, timed and recorded in OUT/results.json (a re-run skips
stages whose outputs exist). Prints the Markdown table for docs/results/audio.md.

    OMP_NUM_THREADS=1 python bench/audio.py --out runs/audio/bench          # the measured recipe (CPU)
    OMP_NUM_THREADS=1 python bench/audio.py --out /tmp/audio-smoke --smoke  # tiny sizes: the pipeline
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from staged import main_for

# 4 colours x 4 shapes + the 4 composites: 20 sound classes (chance 5 %); the CLIP was trained on the full world
WORLD = ("--image-size 64 --colours red,green,blue,yellow --shapes circle,square,triangle,star "
         "--classify-train-per-class 0 --classify-val-per-class 0 --audio")
MODEL = "--model tiny-vit-t8 --pretrained synthworld --device cpu"
SIZES = {"full": {"train": 2000, "val": 200, "per_class": 10, "steps": 150, "batch": 32, "seeds": 3},
         "smoke": {"train": 16, "val": 6, "per_class": 5, "steps": 2, "batch": 4, "seeds": 1}}
#: row -> (regime, frontend, image_text, seeds it runs: "all" or "one")
ROWS = {"partial, FBSP": ("partial", "fbsp", True, "all"),
        "partial, log-mel": ("partial", "logmel", True, "all"),
        "full, FBSP, with image-text": ("full", "fbsp", True, "all"),
        "full, FBSP, without image-text": ("full", "fbsp", False, "all")}


def run_name(row: str, seed: int) -> str:
    regime, frontend, image_text, _ = ROWS[row]
    return f"{regime}-{frontend}-{'it' if image_text else 'noit'}-s{seed}"


def runs(sizes: dict) -> list[tuple[str, int]]:
    return [(row, seed) for row, spec in ROWS.items() for seed in range(sizes["seeds"] if spec[3] == "all" else 1)]


def stages(out: Path, s: dict[str, int]) -> list[tuple[str, str, Path]]:
    """(name, command, output that marks it done), in order."""
    world = out / "world"
    found = [("world", f"clipdense data synth --out {world} --train {s['train']} --val {s['val']} {WORLD} "
                       f"--audio-per-class {s['per_class']}", world / "audio" / "esc50" / "meta" / "esc50.csv")]
    for row, seed in runs(s):
        regime, frontend, image_text, _ = ROWS[row]
        name, run = run_name(row, seed), out / run_name(row, seed)
        found += [
            (f"train {name}", f"clipdense train --objective audioclip {MODEL} --data {world} --out {run} --steps "
                              f"{s['steps']} --batch-size {s['batch']} --lr 2e-3 --warmup-steps {max(1, s['steps'] // 12)} "
                              f"--checkpoint-every {s['steps']} --log-every 25 --seed {seed} --num-workers 0 "
                              f"--objective-arg regime={regime} --objective-arg frontend={frontend} "
                              f"--objective-arg image_text={str(image_text).lower()} --objective-arg tower_seed={seed}",
             run / "metrics.jsonl"),
            (f"eval {name}", f"clipdense eval {MODEL} --data esc50:root={world / 'audio' / 'esc50'} --tasks "
                             f"audio-zeroshot --head {run} --templates world --out {run / 'zeroshot.json'}",
             run / "zeroshot.json"),
            (f"retrieval {name}", f"clipdense eval {MODEL} --data {world} --tasks audio-retrieval --head {run} "
                                  f"--templates world --out {run / 'retrieval.json'}", run / "retrieval.json")]
    return found


def _scores(run: Path) -> dict[str, float]:
    zero = json.loads((run / "zeroshot.json").read_text())["tasks"]["audio-zeroshot"]
    ret = json.loads((run / "retrieval.json").read_text())["tasks"]["audio-retrieval"]
    return {"zero-shot": zero["top1_mean_over_folds"], "a->i R@1": ret["audio_to_image"]["1"],
            "a->i R@5": ret["audio_to_image"]["5"], "i->a R@1": ret["image_to_audio"]["1"],
            "a->t R@1": ret["audio_to_text"]["1"], "a->t R@5": ret["audio_to_text"]["5"]}


def _cell(values: list[float]) -> str:
    pct = [100 * v for v in values]
    return f"{pct[0]:.1f}" if len(pct) == 1 else f"{statistics.mean(pct):.1f} ± {statistics.stdev(pct):.1f}"


def table(out: Path, record: dict, sizes: dict[str, int]) -> str:
    """One Markdown row per ROWS entry: seeds, train seconds, then each score (mean ± sd over seeds)."""
    keys = ["zero-shot", "a->i R@1", "a->i R@5", "i->a R@1", "a->t R@1", "a->t R@5"]
    lines = ["| audio tower | seeds | train s (each) | zero-shot top-1, mean of 5 folds | audio→image R@1 | R@5 | "
             "image→audio R@1 | audio→text R@1 | R@5 |", "|---|---|---|---|---|---|---|---|---|"]
    seconds = record.get("seconds", {})
    for row in ROWS:
        names = [run_name(row, seed) for r, seed in runs(sizes) if r == row]
        done = [n for n in names if (out / n / "retrieval.json").is_file()]
        if not done:
            continue
        scores = [_scores(out / n) for n in done]
        train_s = statistics.mean(seconds.get(f"train {n}", float("nan")) for n in done)
        lines.append(f"| {row} | {len(done)} | {train_s:.0f} | " + " | ".join(_cell([s[k] for s in scores])
                                                                        for k in keys) + " |")
    return "\n".join(lines)


def clip_drift(out: Path) -> str:
    """Image<->text R@1 of the CLIP each full-regime head carries, beside the shipped CLIP it started from (the
    world's val scenes): what training all three towers did to the image-text space."""
    import dataclasses
    import clipdense as cd
    from clipdense.evaluation import evaluate
    from clipdense.heads import load_head
    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    rows = ["| CLIP | seeds | image→text R@1 | text→image R@1 |", "|---|---|---|---|"]
    at1 = lambda d: float(d.get(1, d.get("1", d.get("R@1"))))

    def recalls(model) -> tuple[float, float]:
        r = evaluate(model, out / "world", tasks="retrieval", templates="world", device="cpu")["tasks"]["retrieval"]
        return at1(r["image_to_text"]), at1(r["text_to_image"])

    i2t, t2i = recalls(bundle)
    rows.append(f"| shipped (= every partial-regime run) | - | {100 * i2t:.1f} | {100 * t2i:.1f} |")
    for row, spec in ROWS.items():
        runs_done = [out / run_name(row, seed) for r, seed in runs(SIZES["full"]) if r == row]
        runs_done = [run for run in runs_done if (run / "retrieval.json").is_file()]
        if spec[0] != "full" or not runs_done:
            continue
        scores = [recalls(dataclasses.replace(bundle, model=load_head(run, bundle).clip)) for run in runs_done]
        rows.append(f"| {row} | {len(scores)} | {_cell([x for x, _ in scores])} | {_cell([y for _, y in scores])} |")
    return "\n".join(rows)


if __name__ == "__main__":
    code = main_for(__doc__, "runs/audio/bench", SIZES, stages, table)
    if "--smoke" not in sys.argv:
        out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else Path("runs/audio/bench")
        print("\n" + clip_drift(out))
    sys.exit(code)
