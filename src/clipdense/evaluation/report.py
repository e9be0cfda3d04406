"""Turn ``evaluate``'s dict into Markdown tables and valid JSON (chance levels beside every number)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..config import atomic_write_bytes
from .region_methods import REGION_METHODS
from .regions import SIZE_BUCKETS
from .registry import EVAL_TASKS

#: Tasks whose tables are written here; other registered tasks bring their own (``EvalTask.report``).
BUILT_IN = ("zeroshot", "retrieval", "segmentation", "regions")


def json_ready(value: Any) -> Any:
    """NaN/inf (a metric with no samples) -> None and tuple -> list, recursively, so the JSON is standard."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def _pct(value: Any) -> str:
    """A fraction as a percentage with one decimal; missing (no samples) as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _classification_lines(tasks: dict) -> list[str]:
    rows = []
    if "zeroshot" in tasks:
        z = tasks["zeroshot"]
        rows.append([f"zero-shot ({z['num_samples']} images, {z['num_classes']} classes)", "top-1",
                     _pct(z["top1"]), _pct(z["chance"]["top1"])])
        rows.append(["", "top-5", _pct(z["top5"]), _pct(z["chance"]["top5"])])
        rows.append(["", "mean per-class top-1", _pct(z["mean_per_class_top1"]), _pct(z["chance"]["top1"])])
        for group in ("base", "novel"):
            if group in z:
                rows.append(["", f"{group} top-1 ({z[group]['num_samples']} images)", _pct(z[group]["top1"]),
                             _pct(z["chance"]["top1"])])
    if "retrieval" in tasks:
        r = tasks["retrieval"]
        for direction, label in (("image_to_text", "image→text"), ("text_to_image", "text→image")):
            for i, (k, v) in enumerate(r[direction].items()):
                name = f"retrieval ({r['num_images']} images, {r['num_texts']} texts)" if not i and \
                    direction == "image_to_text" else ""
                rows.append([name, f"{label} {k}", _pct(v), _pct(r["chance"][direction][k])])
    return _table(["task", "metric", "%", "chance %"], rows) if rows else []


def _segmentation_lines(seg: dict) -> list[str]:
    header = ["dense mode", "mIoU", "pixel acc", "things mIoU", "stuff mIoU", "object-pixel acc",
              "bg-thr mIoU", "bg-thr things mIoU", "bg-thr object-pixel acc"]
    rows, chance = [], None
    for mode, res in seg.items():
        a, b = res["argmax"], res["background"] or {}
        rows.append([mode, _pct(a["miou"]), _pct(a["pixel_acc"]), _pct(a["miou_things"]), _pct(a["miou_stuff"]),
                     _pct(a["object_pixel_acc"]), _pct(b.get("miou")), _pct(b.get("miou_things")),
                     _pct(b.get("object_pixel_acc"))])
        chance = (a["chance"], (b or {}).get("chance", {}), b.get("threshold"))
    if chance:
        a, b, thr = chance
        rows.append(["*chance*", _pct(a["miou"]), _pct(a["pixel_acc"]), "", "", _pct(a["object_pixel_acc"]),
                     _pct(b.get("miou")), "", _pct(b.get("object_pixel_acc"))])
    note = (f"bg-thr: only thing classes are named; a pixel whose top softmax probability is below {thr} "
            "is background, and stuff pixels count as background." if chance and thr is not None else "")
    if any("miou_seen" in res["argmax"] for res in seg.values()):     # a trained head: its seen / unseen classes
        header += ["seen mIoU", "unseen mIoU"]
        for row, res in zip(rows, seg.values()):
            row += [_pct(res["argmax"].get("miou_seen")), _pct(res["argmax"].get("miou_unseen"))]
        rows[-1] += [""] * (len(header) - len(rows[-1]))
        note += " seen / unseen: the classes the head was trained on / the others."
    return _table(header, rows) + ([""] + [note.strip()] if note.strip() else [])


def _regions_lines(reg: dict) -> list[str]:
    groups = [g for g in ("base", "novel") if any(g in m for m in _region_methods(reg).values())]
    sizes = list(reg.get("num_things_by_size", {}))
    header = ["dense mode", "method", "things top-1", "things top-5", "stuff top-1", "stuff top-5"] + \
        [f"{g} top-1" for g in groups] + [f"{s} things top-1" for s in sizes]
    rows = []
    for (mode, method), res in _region_methods(reg).items():
        rows.append([mode, method, _pct(res["things"]["top1"]), _pct(res["things"]["top5"]),
                     _pct(res["stuff"]["top1"]), _pct(res["stuff"]["top5"])] +
                    [_pct(res.get(g, {}).get("top1")) for g in groups] +
                    [_pct(res.get("things_by_size", {}).get(s)) for s in sizes])
    if "chance" in reg:
        c = reg["chance"]
        rows.append(["*chance*", "", _pct(c["top1"]), _pct(c["top5"]), _pct(c["top1"]), _pct(c["top5"])] +
                    [_pct(c["top1"]) for _ in groups] + [_pct(c["top1"]) for _ in sizes])
    counts = reg.get("num_regions", {})
    note = f"{counts.get('things', 0)} thing and {counts.get('stuff', 0)} stuff regions; per-class mean accuracy " \
        "over all classes."
    if sizes:
        bounds = ", ".join(f"{name} {_bucket_text(SIZE_BUCKETS[name])} ({n})"
                           for name, n in reg["num_things_by_size"].items())
        note += f" Things by box side in patches of the dense map: {bounds}."
    return _table(header, rows) + ["", note]


def _bucket_text(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return f"< {high:g}" if low == 0 else f">= {low:g}" if high == float("inf") else f"{low:g}-{high:g}"


def _region_methods(reg: dict) -> dict[tuple[str, str], dict]:
    out = {("(any)", name): reg[name] for name, method in REGION_METHODS.items() if not method.dense and name in reg}
    for mode, methods in reg.get("dense", {}).items():
        out.update({(mode, m): res for m, res in methods.items()})
    return out


def _task_lines(name: str, result: Any) -> list[str]:
    """A registered task's own Markdown (its ``report`` hook), else its result as one line of JSON."""
    task = EVAL_TASKS.get(name)
    if task is not None and task.report is not None:
        return task.report(result)
    return [f"`{json.dumps(json_ready(result))}`"]


def to_markdown(results: dict) -> str:
    """Markdown tables of every task in ``results`` (from ``evaluate``), numbers in %, with chance rows."""
    tasks = results.get("tasks", {})
    split = f" [{results['split']}]" if results.get("split") else ""
    lines = [f"## clipdense eval: {results.get('model')} ({results.get('pretrained') or 'random init'}) "
             f"on {results.get('data')}{split}", ""]
    window = (results.get("task_options") or {}).get("segmentation", {}).get("window")
    lines += [f"Dense tasks at short side {results.get('image_size')} px"
              + (f", sliding window {window}" if window else ", whole image")
              + f"; device {results.get('device')}.", ""]
    sections = [("Classification and retrieval", _classification_lines(tasks)),
                ("Zero-shot semantic segmentation", _segmentation_lines(tasks["segmentation"])
                 if "segmentation" in tasks else []),
                ("Region classification (CLIPSelf protocol)", _regions_lines(tasks["regions"])
                 if "regions" in tasks else [])]
    sections += [(name, _task_lines(name, result)) for name, result in tasks.items() if name not in BUILT_IN]
    for title, body in sections:
        if body:
            lines += [f"### {title}", "", *body, ""]
    timing = ", ".join(f"{t} {s:.1f} s ({results['images_per_second'][t]:.1f} img/s)"
                       for t, s in results.get("seconds", {}).items())
    if timing:
        lines += [f"Time: {timing}."]
    skipped = results.get("skipped_tasks") or {}
    if skipped:
        lines += [f"Not run (the data has {', '.join(results.get('data_fields') or ['images only'])}): "
                  + "; ".join(f"{task} {why}" for task, why in skipped.items()) + "."]
    if results.get("skipped_images"):
        lines += [f"Skipped {results['skipped_images']} unreadable images."]
    return "\n".join(lines).rstrip() + "\n"


def write_results(results: dict, path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` (JSON) and the same name with ``.md``; returns both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    md_path = path.with_suffix(".md")
    atomic_write_bytes(path, (json.dumps(json_ready(results), indent=1) + "\n").encode())
    atomic_write_bytes(md_path, to_markdown(results).encode())
    return path, md_path
