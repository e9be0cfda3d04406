"""`clipdense search DIR "sentence" | --audio SOUND.wav`: the images of a folder ranked by cosine to the query."""
from __future__ import annotations

import argparse
import json

from ..data.audio import AUDIO_SUFFIXES, read_audio
from ..data.media import media_kind
from ..errors import ConfigError
from ..heads.expect import expect_head
from ..tasks import use_audio_tower
from ..tasks.video import holds_videos
from ..tasks.search import image_paths, search
from .common import COUNT, add_cache_flag, add_model_args, check_folder, load_cli_model


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser("search", help="the images of a folder ranked by cosine to a sentence or a sound "
                                               "(--audio, through the audio tower)")
    cmd.add_argument("folder", help="folder of images (searched recursively)")
    cmd.add_argument("query", nargs="?", default=None, help="a sentence (or give --audio SOUND.wav instead)")
    cmd.add_argument("--audio", default=None, help="a sound file (WAV, FLAC, OGG): images that sound like it")
    cmd.add_argument("--audio-tower", default=None,
                     help="with --audio: the audio tower (audio/audioclip head file or `train --objective audioclip` "
                          "run) trained beside --model/--pretrained; default the one shipped for those weights")
    cmd.add_argument("--top", type=COUNT, default=5, help="how many images to print")
    cmd.add_argument("--json", action="store_true", help="print a JSON list of {path, score} instead of a table")
    add_model_args(cmd)
    add_cache_flag(cmd)
    cmd.set_defaults(func=run_search)


def run_search(args: argparse.Namespace) -> int:
    """Check every input before the model loads, then print the ranked images (path relative to the folder)."""
    if (args.query is None) == (args.audio is None):
        raise ConfigError("give either a sentence or --audio SOUND.wav (one query)")
    if args.query is not None and not args.query.strip():
        raise ConfigError("the sentence is empty")
    if args.audio_tower and args.audio is None:
        raise ConfigError("--audio-tower: only with --audio (a sentence is embedded by the text tower)")
    folder = check_folder(args.folder, "DIR")
    if not holds_videos(folder):
        image_paths(folder)   # no images: refused before the model loads (a folder of videos is searched as clips)
    query = args.query
    if args.audio is not None:
        if media_kind(args.audio) != "audio":
            raise ConfigError(f"--audio {args.audio}: not a sound file (expected {', '.join(AUDIO_SUFFIXES)})")
        query = read_audio(args.audio)
    if args.audio_tower:   # its kind, before the backbone loads
        expect_head(args.audio_tower, "audio", "--audio-tower")
    bundle = load_cli_model(args)
    if args.audio_tower:
        use_audio_tower(bundle, args.audio_tower)
    ranked = search(bundle, folder, query, top=args.top)
    shown = [(path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path), score)
             for path, score in ranked]
    if args.json:
        print(json.dumps([{"path": name, "score": round(score, 6)} for name, score in shown]))
    else:
        for name, score in shown:
            print(f"{score:+.4f}  {name}")
    return 0

