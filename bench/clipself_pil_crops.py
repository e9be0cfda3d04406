"""`clipdense train` with CLIPSelf's teacher crops cut by PIL (bicubic resize of the crop box), as the code before
issue 19 cut them, instead of the RoIAlign crop path the evaluation shares: issue 19's ablation row asking whether
the crop path explains the old code's higher *rois things* (it does not: docs/results/clipself.md).

    python bench/clipself_pil_crops.py train --config configs/clipself-demo-published.yaml --out runs/abl19/pil
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from clipdense.cli.main import main  # noqa: E402
from clipdense.objectives.clipself_regions import ClipSelfTransform  # noqa: E402


def pil_crops(self: ClipSelfTransform, pixels: torch.Tensor, crop_boxes: torch.Tensor, keys: torch.Tensor,
              capacity: int, skip_cached: bool = True) -> torch.Tensor:
    """ClipSelfTransform._crops with PIL's bicubic ``resize(box=...)`` (squashed; with ``skip_cached`` the cache
    still skips the crops it serves)."""
    size, mean, std = self.teacher_size, torch.tensor(self.mean)[:, None, None], torch.tensor(self.std)[:, None, None]
    image = TF.to_pil_image(((pixels * std + mean).clamp(0, 1) * 255).round().to(torch.uint8))
    crops = torch.zeros(capacity, 3, size, size)
    for i, (x1, y1, x2, y2) in enumerate(crop_boxes.tolist()):
        if skip_cached and self.cached is not None and self.cached(int(keys[i])):
            continue
        left, top, width, height = x1, y1, max(x2 - x1, 1.0), max(y2 - y1, 1.0)   # the image's pixels
        crop = image.resize((size, size), Image.BICUBIC, box=(left, top, left + width, top + height))
        crops[i] = TF.normalize(TF.to_tensor(crop), list(self.mean), list(self.std))
    return crops


if __name__ == "__main__":
    ClipSelfTransform._crops = pil_crops
    sys.exit(main(sys.argv[1:]))
