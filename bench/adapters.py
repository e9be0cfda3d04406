"""Few-shot methods x shots on an ImageFolder split (base-to-novel), with CPU time: a Markdown table.

    python bench/adapters.py --world /tmp/w --shots 1,4,16 --steps 50 --out bench/adapters.md
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch

import clipdense as cd
from clipdense.heads.adapters import METHODS, ZeroShot
from clipdense.tasks.adapt import AdaptConfig, base_to_novel, evaluate
from clipdense.tasks.adapt_protocol import base_novel_split, harmonic_mean, open_image_folder


def zero_shot_row(bundle: cd.models.Bundle, test_dir: Path) -> dict:
    test = open_image_folder(test_dir)
    base, novel = base_novel_split(test.classes)
    b = evaluate(ZeroShot(bundle, base), test, base)
    n = evaluate(ZeroShot(bundle, novel), test, novel)
    return {"method": "zero-shot", "shots": 0, "base": b, "novel": n, "hm": harmonic_mean(b, n), "cpu_seconds": 0.0}


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--world", required=True, help="synthetic world (uses classify/train and classify/val)")
    parser.add_argument("--model", default="tiny-vit-t8")
    parser.add_argument("--pretrained", default=None, help="weights (e.g. the shipped 'synthworld'); none: random init")
    parser.add_argument("--shots", default="1,2,4,8,16")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/adapters.md")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    bundle = cd.load_model(args.model, pretrained=args.pretrained, device="cpu", init_seed=args.seed)
    train, test = Path(args.world) / "classify" / "train", Path(args.world) / "classify" / "val"
    rows = [zero_shot_row(bundle, test)]
    for shots in [int(s) for s in args.shots.split(",")]:
        for method in args.methods.split(","):
            config = AdaptConfig(method=method, shots=shots, seed=args.seed, steps=args.steps, lr=args.lr,
                                 val_shots=2)
            start = time.process_time()
            result = base_to_novel(bundle, train, test, config)
            result["cpu_seconds_total"] = round(time.process_time() - start, 1)
            rows.append(result)
            print(json.dumps({k: result[k] for k in ("method", "shots", "base", "novel", "hm", "cpu_seconds")}),
                  flush=True)
    weights = f"pretrained={args.pretrained}" if args.pretrained else f"random init (seed {args.seed})"
    lines = [f"model `{args.model}` {weights}, {platform.machine()} CPU, "
             f"torch threads {torch.get_num_threads()}, {date.today()}", "",
             "| method | shots | base | novel | HM | fit CPU s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['shots']} | {fmt(r['base'])} | {fmt(r['novel'])} | {fmt(r['hm'])} | "
              f"{r['cpu_seconds']:.1f} |" for r in rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
