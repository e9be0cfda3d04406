"""Turning an ``Analysis`` into what the page shows: the overlay, its legend, the heatmap, detections and a
JSON summary. Thresholds are applied here, so moving a slider redraws without running a model again."""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..tasks.depth import DEPTH_BINS, depth_picture
from ..tasks.detect import draw_detections
from ..tasks.overlay import BACKGROUND_COLOUR, overlay, palette
from ..tasks.segment import BACKGROUND, labels_from_probabilities
from .results import Analysis

#: colours of the heatmap from low to high similarity (dark blue, teal, yellow-green, yellow)
HEAT_ANCHORS = np.array([[13, 8, 135], [32, 144, 140], [180, 222, 44], [253, 231, 37]], dtype=np.float64)
HEAT_ALPHA = 0.6
OVERLAY_ALPHA = 0.5


@dataclass(frozen=True)
class View:
    """One drawing of an analysis.

    Args:
        overlay: the photo (as analysed) with the segmentation, or the detections' boxes, drawn on it.
        heatmap: the photo with the prompt's similarity in colour.
        legend: one entry per class shown: name, colour '#rrggbb', and pixel share (%) or detection count.
        detections: rows of class, score, box (x0, y0, x1, y1 pixels of the analysed photo).
        summary: all of the above as JSON (what the HTTP API returns besides the pictures).
        depth: the photo's DepthCLIP depth in colour, from ``DEPTH_BINS``' nearest (yellow) to farthest (purple)
            (None when the analysis has none).
    """

    overlay: Image.Image
    heatmap: Image.Image
    legend: list[dict[str, Any]]
    detections: list[dict[str, Any]]
    summary: dict[str, Any]
    depth: Image.Image | None = None


def depth_summary(metres: torch.Tensor | None) -> dict[str, float] | None:
    """Range and median (metres) of a depth map, and the ends of its colour scale."""
    if metres is None:
        return None
    return {"min": round(float(metres.min()), 3), "max": round(float(metres.max()), 3),
            "median": round(float(metres.median()), 3), "near": min(DEPTH_BINS), "far": max(DEPTH_BINS)}


def hex_colour(rgb: Any) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 along ``HEAT_ANCHORS``."""
    position = np.clip(values, 0, 1) * (len(HEAT_ANCHORS) - 1)
    low = np.minimum(position.astype(int), len(HEAT_ANCHORS) - 2)
    weight = (position - low)[..., None]
    return ((1 - weight) * HEAT_ANCHORS[low] + weight * HEAT_ANCHORS[low + 1]).round().astype(np.uint8)


def draw_heatmap(image: Image.Image, similarity: torch.Tensor) -> tuple[Image.Image, float, float]:
    """The photo blended with the similarity map stretched over its own range; returns (picture, min, max)."""
    values = similarity.float().numpy()
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    heat = Image.fromarray(heat_colours(scaled))
    return Image.blend(image.convert("RGB"), heat, HEAT_ALPHA), low, high


def segmentation_legend(labels: torch.Tensor, classes: list[str]) -> list[dict[str, Any]]:
    """Present classes by pixel share (largest first), background last."""
    colours = palette(len(classes))
    total = labels.numel()
    entries = [{"class": name, "colour": hex_colour(colours[i]), "share": round(100 * int((labels == i).sum()) / total, 2)}
               for i, name in enumerate(classes)]
    entries = sorted((e for e in entries if e["share"] > 0), key=lambda e: -e["share"])
    background = int((labels == BACKGROUND).sum())
    if background:
        entries.append({"class": "background", "colour": hex_colour(BACKGROUND_COLOUR),
                        "share": round(100 * background / total, 2)})
    return entries


def detection_rows(analysis: Analysis, min_score: float) -> list[dict[str, Any]]:
    found = analysis.detections.above(min_score)
    return [{"class": name, "score": round(float(score), 4), "box": [round(v, 1) for v in box]}
            for name, score, box in zip(found.names, found.scores.tolist(), found.boxes.tolist())]


def render(analysis: Analysis, threshold: float = 0.0, min_score: float = 0.3) -> View:
    """Draw ``analysis``: pixels whose top class probability is under ``threshold`` are background;
    detections scoring under ``min_score`` are hidden."""
    heatmap, low, high = draw_heatmap(analysis.image, analysis.heatmap)
    colours = palette(len(analysis.classes))
    detections: list[dict[str, Any]] = []
    if analysis.detections is not None:
        detections = detection_rows(analysis, min_score)
        picture = draw_detections(analysis.image, analysis.detections.above(min_score))
        legend = []
        for i, name in enumerate(analysis.classes):
            scores = [row["score"] for row in detections if row["class"] == name]
            if scores:
                legend.append({"class": name, "colour": hex_colour(colours[i]), "count": len(scores),
                               "best": max(scores)})
    else:
        labels = labels_from_probabilities(analysis.probabilities[None], threshold)[0]   # segment's rule
        picture = overlay(analysis.image, labels, analysis.classes, alpha=OVERLAY_ALPHA, legend=False)
        legend = segmentation_legend(labels, analysis.classes)
    ranking = sorted(analysis.ranking.items(), key=lambda item: -item[1])
    summary = {
        "image": {"width": analysis.image.width, "height": analysis.image.height},
        "model": analysis.model, "head": analysis.head, "classes": analysis.classes,
        "legend": legend, "detections": detections, "threshold": threshold, "min_score": min_score,
        "ranking": [{"class": name, "probability": round(p, 4)} for name, p in ranking],
        "heatmap": {"prompt": analysis.heatmap_prompt, "min": round(low, 4), "max": round(high, 4)},
        "seconds": {k: round(v, 3) for k, v in analysis.seconds.items()}, "notes": list(analysis.notes),
        "depth": depth_summary(analysis.depth),
    }
    depth = None if analysis.depth is None else depth_picture(analysis.depth, min(DEPTH_BINS), max(DEPTH_BINS))
    return View(picture, heatmap, legend, detections, summary, depth)


def legend_html(legend: list[dict[str, Any]]) -> str:
    """Colour swatches with names and shares (or counts) for the page."""
    if not legend:
        return "<div id='legend-empty'>nothing to show at this threshold</div>"
    items = []
    for entry in legend:
        amount = f"{entry['share']:.1f}%" if "share" in entry else f"{entry['count']} box(es), best {entry['best']:.2f}"
        items.append(f"<span class='legend-item' style='display:inline-flex;align-items:center;margin:2px 10px 2px 0'>"
                     f"<span style='display:inline-block;width:14px;height:14px;margin-right:5px;border:1px solid #888;"
                     f"background:{entry['colour']}'></span>{html.escape(entry['class'])} <small style='margin-left:4px;"
                     f"opacity:.7'>{amount}</small></span>")
    return "<div class='legend'>" + "".join(items) + "</div>"


def message(analysis: Analysis, view: View) -> str:
    """A short Markdown line for the page: what was run, how long it took, and any notes."""
    seconds = view.summary["seconds"]
    timing = ", ".join(f"{name} {value:.2f} s" for name, value in seconds.items())
    what = f"**{analysis.model}**" + (f" with head {analysis.head}" if analysis.head else ", zero-shot")
    top = view.summary["ranking"][0]
    lines = [f"{what} — {timing}. Whole image: {top['class']} ({100 * top['probability']:.0f}%). "
             f"Heatmap of '{analysis.heatmap_prompt}': cosine {view.summary['heatmap']['min']:.3f} (dark) "
             f"to {view.summary['heatmap']['max']:.3f} (bright)."]
    if view.summary["depth"] is not None:
        d = view.summary["depth"]
        lines.append(f"Depth (DepthCLIP, training-free): {d['min']:.2f} to {d['max']:.2f} m, median {d['median']:.2f} m "
                     f"(colours from {d['near']:g} m, yellow, to {d['far']:g} m, purple).")
    lines += [f"Note: {note}." for note in analysis.notes]
    return "\n\n".join(lines)
