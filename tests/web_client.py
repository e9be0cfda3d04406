"""A tiny client of the page's HTTP API (Gradio's: upload, call, read the event stream), and a server fixture
helper, shared by the web tests. The same three requests work with curl:

    curl -F files=@photo.jpg http://127.0.0.1:7860/gradio_api/upload          -> ["/tmp/gradio/.../photo.jpg"]
    curl -H 'Content-Type: application/json' -d '{"data": [{"path": "...", "meta": {"_type": "gradio.FileData"}},
         "cat, dog", "", "tiny-vit-t8", "synthworld", "maskclip", "imagenet", "none (zero-shot)", 0, 0.3]}' \
         http://127.0.0.1:7860/gradio_api/call/analyse                          -> {"event_id": "..."}
    curl http://127.0.0.1:7860/gradio_api/call/analyse/EVENT_ID                -> event: complete / data: [...]
"""
from __future__ import annotations

import contextlib
import io
import json
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
from PIL import Image

OUTPUTS = ("state", "message", "overlay", "legend", "heatmap", "ranking", "detections", "summary", "depth")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


class PageClient:
    """Calls ``/analyse`` as a browser or curl would; returns the outputs by name."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=120)

    def upload(self, path: Path) -> dict[str, Any]:
        response = self.http.post("/gradio_api/upload", files={"files": (path.name, path.read_bytes())})
        response.raise_for_status()
        return {"path": response.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def analyse(self, photo: Path | None, classes: str, heatmap: str = "", model: str = "tiny-vit-t8",
                pretrained: str = "synthworld", mode: str = "maskclip", templates: str = "world",
                head: str = "none (zero-shot)", threshold: float = 0.0, min_score: float = 0.3) -> dict[str, Any]:
        data = [self.upload(photo) if photo is not None else None, classes, heatmap, model, pretrained, mode,
                templates, head, threshold, min_score]
        response = self.http.post("/gradio_api/call/analyse", json={"data": data})
        response.raise_for_status()
        stream = self.http.get(f"/gradio_api/call/analyse/{response.json()['event_id']}").text
        event, payload = None, None
        for line in stream.splitlines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                payload = line.split(":", 1)[1].strip()
        if event != "complete" or payload is None:
            raise AssertionError(f"the page's API answered {event}: {stream[-500:]}")
        return dict(zip(OUTPUTS, json.loads(payload)))

    def image(self, filedata: dict[str, Any]) -> Image.Image:
        response = self.http.get(filedata["url"])
        response.raise_for_status()
        return Image.open(io.BytesIO(response.content))


@contextlib.contextmanager
def running(settings: Any, port: int | None = None) -> Iterator[str]:
    """The page served in this process on a free loopback port; closed when the block ends."""
    from clipdense.web.app import serve
    port = port or free_port()
    app = serve(settings, host="127.0.0.1", port=port, block=False)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + "/")
        yield base
    finally:
        app.close(verbose=False)
