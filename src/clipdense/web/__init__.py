"""The local page (`clipdense serve`): upload a photo, name classes, see the segmentation, a prompt's heatmap
and, with a trained head, its detections. An optional extra: ``pip install 'clipdense[web]'`` (Gradio).

    from clipdense.web.app import PageSettings, serve      # needs gradio
    serve(PageSettings(model="tiny-vit-t8", pretrained="synthworld"), port=7860)

Everything but ``app`` works without Gradio: ``Analyser`` answers a ``Request`` with an ``Analysis``,
``render`` draws it, ``discover_heads`` finds head files the page can use (``HEAD_USES``).
"""
from .analysis import Analyser, Analysis, Request, parse_classes, read_photo
from .heads import HEAD_USES, HeadChoice, HeadUse, available_uses, discover_heads, use_for_kind
from .render import View, render

__all__ = ["Analyser", "Analysis", "Request", "parse_classes", "read_photo", "HEAD_USES", "HeadChoice", "HeadUse",
           "available_uses", "discover_heads", "use_for_kind", "View", "render"]
