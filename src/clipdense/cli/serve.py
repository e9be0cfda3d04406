"""`clipdense serve`: the local page (upload a photo, name classes, see them), an optional extra."""
from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path

from ..errors import ConfigError
from ..models import DENSE_MODES
from .common import AMOUNT, PORT, SECONDS, add_cache_flag, add_model_args, bounded, model_choice

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="local web page: upload a photo, name classes, see them")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine "
                                                            "only)")
    parser.add_argument("--port", type=PORT, default=7860, help="port (default: 7860)")
    add_model_args(parser)     # the page's initial model (changeable on the page)
    parser.add_argument("--mode", default="maskclip", choices=sorted(DENSE_MODES), help="initial dense mode")
    parser.add_argument("--templates", default="imagenet", help="initial prompt set (imagenet, simple, world, ...)")
    parser.add_argument("--heads", action="append", default=None, metavar="DIR",
                        help="folder (or file) with trained heads to offer; repeatable (default: ./runs if present)")
    parser.add_argument("--max-side", type=bounded(int, 32, what="a size in pixels"), default=1024,
                        help="photos are shrunk so their longer side is at most this (default: 1024)")
    parser.add_argument("--examples", type=AMOUNT, default=4, help="synthetic-world example scenes to offer (default: 4)")
    add_cache_flag(parser)
    parser.add_argument("--exit-after", type=SECONDS, default=None, metavar="SECONDS",
                        help="stop the server after this many seconds (default: run until Ctrl-C)")
    parser.set_defaults(func=run_serve)


def check_host(host: str) -> None:
    """Refuse in one line a --host this machine cannot listen on (before any port is tried, so that a bad
    address is not reported as a port problem)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--host {host}: not an address or a name this machine resolves ({exc})") from None
    family, _, _, _, address = infos[0]
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address[0], 0))
    except OSError as exc:
        raise ConfigError(f"--host {host}: this machine cannot listen on that address "
                          f"({exc.strerror or exc})") from None


def run_serve(args: argparse.Namespace) -> int:
    check_host(args.host)
    from ..web.heads import discover_heads   # no Gradio: the heads are checked before the page is built

    folders = args.heads if args.heads is not None else [p for p in ("runs",) if Path(p).is_dir()]
    missing = [folder for folder in folders if not Path(folder).exists()]
    if missing:
        raise ConfigError(f"--heads {missing[0]}: no such folder or file")
    heads = discover_heads(folders)
    try:
        from ..web.app import PageSettings, serve
    except ImportError as exc:
        raise ConfigError(f"clipdense serve needs the web extra: pip install 'clipdense[web]' ({exc})") from exc
    model, pretrained = model_choice(args)
    settings = PageSettings(model=model, pretrained=pretrained, mode=args.mode, templates=args.templates,
                            device=args.device, max_side=args.max_side, heads=heads, examples=max(args.examples, 0),
                            text_cache=not args.no_cache)
    try:
        app = serve(settings, host=args.host, port=args.port, block=False)
    except OSError as exc:
        raise ConfigError(f"--port {args.port}: cannot listen on {args.host}:{args.port} "
                          f"({' '.join(str(exc).split())})") from None
    where = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}"
    print(f"clipdense page on {where} ({len(heads)} head(s) found; Ctrl-C stops it)", flush=True)
    if args.host not in LOOPBACK:
        print(f"note: listening on {args.host}, so other machines can reach the page", flush=True)
    deadline = None if args.exit_after is None else time.monotonic() + args.exit_after
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        app.close(verbose=False)
    return 0
