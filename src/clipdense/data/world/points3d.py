"""The 3-D world written in ModelNet40's two layouts (``clipdense data synth --points``).

```
OUT/ModelNet40/<class>/{train,test}/<class>_0001.off          clean meshes
OUT/modelnet40_normal_resampled/<class>/<class>_0001.txt      x,y,z,nx,ny,nz (jitter / partial / clutter applied)
OUT/modelnet40_normal_resampled/modelnet40_{shape_names,train,test}.txt
OUT/README.md, OUT/shapes3d.json                              what it is; the config it was written from
```
Read either with ``--data modelnet:root=OUT/ModelNet40`` or ``modelnet:root=OUT/modelnet40_normal_resampled``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from ..formats.modelnet import write_off, write_point_text
from .shapes3d import SPLITS, Shapes3DConfig, make_mesh, scan_points, shape_rng

MESH_DIR, RESAMPLED_DIR, PREFIX = "ModelNet40", "modelnet40_normal_resampled", "modelnet40"

README = """# 3-D world (clipdense data synth --points)

Primitive meshes ({classes}) scaled per axis, tilted and turned about z, in ModelNet40's layouts:
`{mesh}/<class>/{{train,test}}/*.off` (clean meshes) and `{res}/` (the `modelnet40_normal_resampled` layout:
{points} points per shape as `x,y,z,nx,ny,nz`, with noise {noise}, partial views {partial:.0%}, clutter
{clutter:.0%}). {train} train and {test} test shapes per class. Labels are the line order of
`{res}/{prefix}_shape_names.txt`.
"""


def write_points_world(out: str | Path, config: Shapes3DConfig,
                       progress: Callable[[int], object] | None = None) -> dict[str, int]:
    """Write every shape of ``config`` under ``out`` in both layouts; {split: shapes written}."""
    config.validate()
    out = Path(out)
    meshes, resampled = out / MESH_DIR, out / RESAMPLED_DIR
    resampled.mkdir(parents=True, exist_ok=True)
    counts = {"train": config.train_per_class, "test": config.test_per_class}
    number = 0
    lists: dict[str, list[str]] = {split: [] for split in SPLITS}
    for split in SPLITS:
        for name in config.classes:
            (meshes / name / split).mkdir(parents=True, exist_ok=True)
            (resampled / name).mkdir(parents=True, exist_ok=True)
            for index in range(counts[split]):
                number_in_class = index + 1 + (config.train_per_class if split == "test" else 0)
                shape_id = f"{name}_{number_in_class:04d}"
                rng = shape_rng(config, split, name, index)
                mesh = make_mesh(config, name, rng)
                write_off(meshes / name / split / f"{shape_id}.off", *mesh)
                write_point_text(resampled / name / f"{shape_id}.txt", *scan_points(config, mesh, rng))
                lists[split].append(shape_id)
                number += 1
                if progress is not None:
                    progress(1)
    # labels in sorted order, as ModelNet40's own list and the mesh layout's sorted class folders give them
    (resampled / f"{PREFIX}_shape_names.txt").write_text("\n".join(sorted(config.classes)) + "\n")
    for split, ids in lists.items():
        (resampled / f"{PREFIX}_{split}.txt").write_text("\n".join(ids) + ("\n" if ids else ""))
    (out / "shapes3d.json").write_text(json.dumps(dataclasses.asdict(config), indent=1) + "\n")
    (out / "README.md").write_text(README.format(
        classes=", ".join(config.classes), mesh=MESH_DIR, res=RESAMPLED_DIR, points=config.points,
        noise=config.noise, partial=config.partial_fraction, clutter=config.clutter_fraction,
        train=config.train_per_class, test=config.test_per_class, prefix=PREFIX))
    return {split: len(ids) for split, ids in lists.items()}
