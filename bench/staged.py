"""The runner shared by the staged CPU benchmarks (detection, segheads, groupvit): each stage is one `clipdense`
command, run as written (so the printed table is its own recipe), timed, and recorded in OUT/results.json after
every stage; a re-run skips stages whose output exists."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

CLI = [sys.executable, "-m", "clipdense.cli.main"]
#: (name, the `clipdense ...` command, the output whose existence marks it done)
Stage = tuple[str, str, Path]


def run_stage(command: str) -> float:
    """Run one clipdense command (single-threaded BLAS unless the caller set OMP_NUM_THREADS); seconds taken.
    On failure the command's last error lines are printed before the exception."""
    start = time.perf_counter()
    proc = subprocess.run(CLI + shlex.split(command)[1:], env={**os.environ, "PYTHONUNBUFFERED": "1"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        print("\n".join(proc.stderr.strip().splitlines()[-15:]), file=sys.stderr)
        raise subprocess.CalledProcessError(proc.returncode, command)
    return time.perf_counter() - start


def main_for(doc: str, default_out: str, sizes: dict[str, dict], stages: Callable[[Path, dict], list[Stage]],
             table: Callable[[Path, dict, dict], str]) -> int:
    """The benchmark's command line: --out, --smoke; run the stages at those sizes, then print the table."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=default_out, help="folder for the worlds, runs and results")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the pipeline runs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = sizes["smoke" if args.smoke else "full"]
    results_path = out / "results.json"
    record = json.loads(results_path.read_text()) if results_path.is_file() else {"seconds": {}, "commands": {}}
    for name, command, done in stages(out, chosen):
        record["commands"][name] = command
        if done.exists():
            print(f"[skip] {name}: {done} exists", flush=True)
            continue
        print(f"[run] {command}", flush=True)
        record["seconds"][name] = round(run_stage(command), 1)
        results_path.write_text(json.dumps(record, indent=1))
    print(table(out, record, chosen))
    return 0
