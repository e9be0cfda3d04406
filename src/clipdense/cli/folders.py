"""The folder form shared by `clipdense segment|classify|detect DIR --out OUTDIR`: its flags, their checks and
the run's closing lines (the work is ``tasks.folder.run_folder``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from .common import COUNT
from .outputs import check_out_folder

FOLDER_FLAGS = ("glob", "recursive", "batch_size", "no_progress")


def add_folder_flags(parser: argparse.ArgumentParser) -> None:
    """--glob / --recursive / --batch-size: how a folder given in place of an image is walked."""
    parser.add_argument("--glob", default=None,
                        help="with a folder: the files to take (default: every image suffix, e.g. '*.png')")
    parser.add_argument("--recursive", action="store_true", help="with a folder: also walk its sub-folders")
    parser.add_argument("--batch-size", type=COUNT, default=None,
                        help="with a folder: images of one size per forward (default 8)")
    parser.add_argument("--no-progress", action="store_true", help="with a folder: no progress bar")


def is_folder_run(path: str, args: argparse.Namespace) -> bool:
    """True when ``path`` is a folder; the folder flags given with a single file are refused in one line."""
    if Path(path).is_dir():
        return True
    for name in FOLDER_FLAGS:
        if getattr(args, name, None) not in (None, False):
            raise ConfigError(f"--{name.replace('_', '-')}: only with a folder of images, and {path} is a file")
    return False


def folder_out(args: argparse.Namespace, default: str | None) -> Path:
    """The OUTDIR of a folder run: --out given (not the single-image default) and not a file."""
    if args.out is None or args.out == default:
        raise ConfigError("--out: a folder run needs --out OUTDIR (where its outputs go)")
    return check_out_folder(args.out, "--out", "a folder for a folder run")


def job_of(args: argparse.Namespace, root: str, out: Path):
    """The ``FolderJob`` of the parsed flags."""
    from ..tasks.batching import DEFAULT_BATCH
    from ..tasks.folder import FolderJob

    return FolderJob(root=root, out=out, pattern=args.glob, recursive=args.recursive,
                     batch_size=args.batch_size or DEFAULT_BATCH, progress=not args.no_progress,
                     precision=_torch_precision(args))


def _torch_precision(args: argparse.Namespace) -> str:
    """The autocast of a folder run: onnxruntime's graphs are fp32, so their torch-side arithmetic stays fp32."""
    return "fp32" if getattr(args, "runtime", "torch") == "onnx" else getattr(args, "precision", "fp32")


def report(command: str, summary, out: Path) -> int:
    """The closing lines: counts, skips (named in OUT/skipped_files.tsv) and the files written."""
    if summary.found == 0:
        raise ConfigError(f"{command}: no images found (check the folder, --glob and --recursive)")
    rate = summary.processed / summary.seconds if summary.seconds > 0 else 0.0
    print(f"{command}: {summary.found} images: {summary.resumed} done before, {summary.processed} now "
          f"({rate:.2f} img/s), {summary.skips.count} skipped")
    if summary.skips.count:
        print(f"{summary.skips.summary()} (listed in {out / 'skipped_files.tsv'})")
    print(f"wrote {out}" + (f" ({', '.join(p.name for p in summary.written)})" if summary.written else ""))
    return 0
