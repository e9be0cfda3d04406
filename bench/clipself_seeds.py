"""The demo's headline comparisons over several seeds: CLIPSelf variants against their start model, and the
CLIP against the SILC start model. Each seed is a whole `clipdense demo` (a fresh world, fresh distillations);
the table gives the mean and the spread (min..max) so a difference of a point or two is not read as a finding.

    python bench/clipself_seeds.py --seeds 0,1,2 --pretrained synthworld,synthworld-silc --out runs/seeds

``--reuse`` keeps the seeds already evaluated under ``--out`` (add a seed, or rebuild the table, without rerunning).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from clipdense.demo.config import DemoConfig  # noqa: E402
from clipdense.demo.pipeline import run_demo  # noqa: E402
from clipdense.demo.report import rois_over_teacher_crops  # noqa: E402

METRICS = {  # column -> path in one model's results["tasks"]
    "zero-shot top-1": "zeroshot/top1",
    "rois things": "regions/dense/maskclip/rois/things/top1",
    "rois stuff": "regions/dense/maskclip/rois/stuff/top1",
    "crops things": "regions/crops/things/top1",
    "seg mIoU things": "segmentation/maskclip/argmax/miou_things",
    "seg mIoU stuff": "segmentation/maskclip/argmax/miou_stuff",
}


def _get(tree: dict, path: str) -> float | None:
    for key in path.split("/"):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return float(tree)


def rows_of(results: dict) -> dict[str, dict[str, float | None]]:
    """Per model: every metric, plus rois things as a share of the teacher's crops."""
    rows = {}
    for label, result in results.items():
        row = {name: _get(result["tasks"], path) for name, path in METRICS.items()}
        row["of teacher crops"] = rois_over_teacher_crops(results, label)
        rows[label] = row
    return rows


def summary(values: list[float | None]) -> str:
    """'mean (min..max)' in percent over the seeds that have the value."""
    got = [100 * v for v in values if v is not None]
    if not got:
        return "–"
    return f"{statistics.mean(got):.1f} ({min(got):.1f}..{max(got):.1f})"


def table(per_seed: list[dict[str, dict[str, float | None]]]) -> list[str]:
    columns = list(METRICS) + ["of teacher crops"]
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label in per_seed[0]:
        cells = [summary([seed[label][c] for seed in per_seed if label in seed]) for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--pretrained", default="synthworld,synthworld-silc", help="start models (shipped tags)")
    p.add_argument("--out", default="runs/seeds")
    p.add_argument("--quick", action="store_true", help="the one-minute demo per seed (a smoke test)")
    p.add_argument("--reuse", action="store_true",
                   help="a seed whose folder under --out already holds its evaluation is not run again")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    report: dict[str, list] = {}
    for tag in args.pretrained.split(","):
        per_seed = []
        for seed in seeds:
            out = Path(args.out) / f"{tag}-seed{seed}"
            config = DemoConfig(out=str(out), pretrained=tag, seed=seed, quick=args.quick, catseg_steps=0,
                                detect_steps=0)      # the CLIPSelf comparisons only: no trained heads
            if not (args.reuse and (out / "eval" / "results.json").is_file()):
                run_demo(config, log=lambda _: None)
            per_seed.append(rows_of(json.loads((out / "eval" / "results.json").read_text())))
            print(f"{tag} seed {seed} done", flush=True)
        report[tag] = per_seed
        print(f"\n### start model `{tag}`, seeds {args.seeds}: mean (min..max), %\n")
        print("\n".join(table(per_seed)), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "seeds.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
