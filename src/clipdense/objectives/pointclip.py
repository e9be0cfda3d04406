"""``pointclip-adapter``: PointCLIP's inter-view adapter trained few-shot on point clouds (``points`` +
``image_label`` Samples: ``--data modelnet:root=DIR`` or the k-shot subset a benchmark draws).

Each step projects its clouds into the adapter's views and encodes them with the frozen image tower (no grad),
then trains the adapter by cross-entropy of its view-summed logits. The export is the adapter, saved as a head
(``pointclip/adapter``) tied to the frozen model's weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.readers import DataInfo
from ..data.sample import Sample
from ..errors import DataError
from ..heads.pointclip import InterViewAdapter, InterViewAdapterConfig
from ..models.pointviews import PointViewSettings, encode_point_views
from .base import HeadExport, Objective
from .fewshot import IGNORE, FewShotOptions, training_vocabulary


@dataclass
class PointsTransform:
    """(sample, generator) -> ``num_points`` points drawn from the cloud (without replacement when it has
    enough, seeded per sample) and the label's vocabulary index."""

    num_points: int
    lookup: Sequence[int]

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if sample.points is None or sample.image_label is None or not 0 <= sample.image_label < len(self.lookup):
            raise DataError(f"{sample.key}: expected a point cloud with a class label of the data")
        n = sample.points.shape[0]
        index = (torch.randperm(n, generator=generator)[:self.num_points] if n >= self.num_points
                 else torch.randint(n, (self.num_points,), generator=generator))
        return {"points": sample.points[index].float(),
                "label": torch.tensor(self.lookup[sample.image_label], dtype=torch.long)}


class PointClipAdapterObjective(Objective):
    """Cross-entropy of the inter-view adapter's logits over the training vocabulary (frozen CLIP)."""

    name = "pointclip-adapter"
    needs: ClassVar[frozenset[str]] = frozenset({"points", "image_label"})

    @dataclass
    class Options(FewShotOptions, InterViewAdapterConfig):
        """``InterViewAdapterConfig``'s fields, ``FewShotOptions``' classes, and ``num_points`` per cloud."""

        num_points: int = 1024

    def __init__(self, bundle: Any, options: Any = None, info: DataInfo | None = None, total_steps: int = 1) -> None:
        super().__init__()
        self.options = options if options is not None else self.Options()
        info = info or DataInfo()
        vocabulary, self.lookup = training_vocabulary(info.classes, self.options.classes, info.novel)
        self.bundle, self.backbone = bundle, bundle.model
        bundle.model.requires_grad_(False)
        config = InterViewAdapterConfig(**{k: getattr(self.options, k) for k in InterViewAdapterConfig.__dataclass_fields__})
        self.adapter = InterViewAdapter(bundle, vocabulary, config)
        self.settings = PointViewSettings(projection=config.projection, views=config.views)

    def frozen_modules(self) -> list[nn.Module]:
        return [self.backbone]

    def train(self, mode: bool = True) -> "PointClipAdapterObjective":
        super().train(mode)
        self.backbone.eval()
        return self

    def sample_transform(self) -> PointsTransform:
        return PointsTransform(self.options.num_points, self.lookup)

    def exported_model(self) -> nn.Module:
        return self.adapter

    def exported_head(self) -> HeadExport:
        return HeadExport(self.adapter, self.bundle)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        features = encode_point_views(self.bundle, batch["points"], self.settings)
        logits = self.adapter.logits(features)
        labels = batch["label"].to(logits.device)
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE)
        valid = labels != IGNORE
        accuracy = ((logits.argmax(-1) == labels) & valid).sum() / valid.sum().clamp_min(1)
        return {"loss": loss, "accuracy": accuracy.detach()}
