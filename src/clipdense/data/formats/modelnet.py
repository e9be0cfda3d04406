"""ModelNet40's two layouts, read and written with plain numpy, and single point-cloud files.

- meshes: ``ROOT/<class>/{train,test}/<class>_0001.off`` (Princeton OFF; ModelNet's files sometimes glue the
  counts to the keyword, ``OFF490 518 0``, which is accepted), sampled to points by area on reading;
- ``modelnet40_normal_resampled``: ``ROOT/<class>/<class>_0001.txt`` rows ``x,y,z,nx,ny,nz`` with
  ``ROOT/<prefix>_shape_names.txt`` (class order = labels) and ``ROOT/<prefix>_{train,test}.txt`` (shape ids).

Point files for classification: ``.off`` (a mesh, sampled) and ``.xyz`` / ``.pts`` (whitespace- or
comma-separated rows, the first three columns xyz). ModelNet has no val split: ``val`` reads ``test``.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...errors import DataError
from ..media import register_media
from ..sample import Sample
from ..skips import SkipCounter
from ..validate import UNKNOWN_CLASS, BoxDrops, as_skip, require_usable, skip_error
from ..world.shapes3d import Mesh, sample_surface

POINT_SUFFIXES = (".off", ".xyz", ".pts")
register_media("points", POINT_SUFFIXES)

#: points sampled from a mesh when the caller does not say (the resampled files are used as stored)
DEFAULT_POINTS = 1024


def check_points(points: np.ndarray | torch.Tensor, where: str) -> np.ndarray:
    """``points`` as (N, 3) float32 numpy, or one DataError line: empty, not (N, >=3), NaN/inf, or all equal."""
    array = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    if array.ndim != 2 or array.shape[1] < 3:
        raise DataError(f"{where}: expected a point cloud of shape (N, 3), got shape {tuple(array.shape)}")
    array = array[:, :3].astype(np.float32)
    if len(array) == 0:
        raise DataError(f"{where}: empty point cloud (0 points)")
    if not np.isfinite(array).all():
        raise DataError(f"{where}: the point cloud holds NaN or infinite coordinates")
    if float(np.ptp(array, axis=0).max()) == 0.0:
        raise DataError(f"{where}: degenerate point cloud (all {len(array)} points are equal)")
    return array


# ------------------------------------------------------------------------------------------ OFF meshes
def _numbers(line: str, kind: type, path: Path, what: str) -> list:
    try:
        return [kind(x) for x in line.split()]
    except ValueError:
        raise DataError(f"{path}: malformed OFF ({what}: {line.strip()[:40]!r} is not numbers)") from None


def read_off(path: str | os.PathLike) -> Mesh:
    """(vertices (V, 3) float64, faces (F, 3) int64) of an OFF file; polygons are fan-triangulated."""
    path = Path(path)
    try:
        lines = [ln.split("#")[0].strip() for ln in path.read_text(encoding="ascii", errors="replace").splitlines()]
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].startswith("OFF"):
        raise DataError(f"{path}: not an OFF file (the first line must start with 'OFF')")
    head = lines[0][3:].strip()
    counts_line, body = (head, lines[1:]) if head else (lines[1] if len(lines) > 1 else "", lines[2:])
    counts = _numbers(counts_line, int, path, "counts")
    if len(counts) < 2 or min(counts[:2]) < 0:
        raise DataError(f"{path}: malformed OFF (expected 'vertices faces edges' counts, got {counts_line!r})")
    nv, nf = counts[:2]
    if len(body) < nv + nf:
        raise DataError(f"{path}: malformed OFF (header says {nv} vertices + {nf} faces, file has {len(body)} "
                        "lines)")
    rows = [_numbers(ln, float, path, f"vertex {i}")[:3] for i, ln in enumerate(body[:nv])]
    if any(len(row) != 3 for row in rows):
        raise DataError(f"{path}: malformed OFF (every vertex needs three coordinates)")
    vertices = np.array(rows, dtype=np.float64)
    faces = []
    for i, line in enumerate(body[nv:nv + nf]):
        row = _numbers(line, int, path, f"face {i}")
        if not row or len(row) < row[0] + 1 or row[0] < 3:
            raise DataError(f"{path}: malformed OFF (face {i}: expected 'n i1 .. in' with n >= 3)")
        loop = row[1:row[0] + 1]
        if min(loop) < 0 or max(loop) >= nv:
            raise DataError(f"{path}: malformed OFF (face {i} names vertex {max(loop)}, the file has {nv})")
        faces += [(loop[0], loop[k], loop[k + 1]) for k in range(1, len(loop) - 1)]
    return vertices.reshape(-1, 3), np.asarray(faces, dtype=np.int64).reshape(-1, 3)


def write_off(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray) -> None:
    """A triangle mesh as OFF text (6 decimals)."""
    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"3 {a} {b} {c}" for a, b, c in faces]
    Path(path).write_text("\n".join(lines) + "\n", encoding="ascii")


def mesh_points(path: str | os.PathLike, count: int = DEFAULT_POINTS, seed: int = 0) -> np.ndarray:
    """``count`` surface points of the OFF mesh at ``path`` (area-weighted, seeded)."""
    vertices, faces = read_off(path)
    if len(faces) == 0:
        raise DataError(f"{path}: the mesh has no faces to sample points from")
    try:
        points, _ = sample_surface(vertices, faces, count, np.random.default_rng(seed))
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None
    return check_points(points, str(path))


# ---------------------------------------------------------------------------------- point text files
def read_point_text(path: str | os.PathLike) -> np.ndarray:
    """Rows of numbers separated by commas or whitespace (``modelnet40_normal_resampled``'s ``.txt``, ``.xyz``,
    ``.pts``) as (N, columns) float32; a ragged or non-numeric file is one line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    rows = [ln.replace(",", " ").split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not rows:
        raise DataError(f"{path}: empty point cloud (no rows)")
    if len({len(r) for r in rows}) != 1:
        raise DataError(f"{path}: rows with different numbers of columns")
    try:
        return np.array(rows, dtype=np.float32)
    except ValueError:
        raise DataError(f"{path}: a row that is not numbers") from None


def write_point_text(path: str | os.PathLike, xyz: np.ndarray, normals: np.ndarray) -> None:
    """``x,y,z,nx,ny,nz`` rows, as ``modelnet40_normal_resampled`` stores them."""
    rows = np.concatenate([xyz, normals], 1)
    Path(path).write_text("\n".join(",".join(f"{v:.6f}" for v in row) for row in rows) + "\n", encoding="ascii")


def read_point_file(path: str | os.PathLike, count: int = DEFAULT_POINTS) -> np.ndarray:
    """(N, 3) points of a single file: an OFF mesh is sampled to ``count`` points, a point file read as is."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such point file")
    if path.suffix.lower() == ".off":
        return mesh_points(path, count)
    return check_points(read_point_text(path), str(path))


# ---------------------------------------------------------------------------------------------- reader
def shape_class(shape_id: str) -> str:
    """'night_stand_0001' -> 'night_stand' (ModelNet ids are the class and a 4-digit number)."""
    return shape_id.rsplit("_", 1)[0]


class ModelNetPoints:
    """A ModelNet split as ``Sample``s with ``points`` ((N, 3) float32) and ``image_label`` (the shape's class,
    an index into ``classes``; ``image`` is None). ``root`` is either layout (see the module docstring).

    Args:
        root: a ``modelnet40_normal_resampled``-style folder (it holds ``*_shape_names.txt``) or a mesh folder.
        split: ``train`` or ``test`` (``val`` reads ``test``).
        num_points: points per sample: the first ``num_points`` rows of a resampled file (PointNet++'s convention;
            0 = all), or the number sampled from a mesh (seeded by the shape's id, so every read is the same).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", num_points: int = DEFAULT_POINTS,
                 skip_counter: SkipCounter | None = None) -> None:
        self.root, self.num_points = Path(root), int(num_points)
        self.split = "test" if split == "val" else split
        self.skips = skip_counter if skip_counter is not None else SkipCounter()
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such ModelNet folder")
        names = sorted(self.root.glob("*_shape_names.txt"))
        self.resampled = bool(names)
        self.classes, self.items = self._resampled_items(names[0]) if names else self._mesh_items()
        if not self.items:
            raise DataError(f"{self.root}: no {self.split} shapes (expected CLASS/{self.split}/*.off or a "
                            f"*_{self.split}.txt shape list)")

    def _resampled_items(self, names_file: Path) -> tuple[list[str], list[tuple[Path, int]]]:
        classes = [ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()]
        prefix = names_file.name[: -len("_shape_names.txt")]
        listing = self.root / f"{prefix}_{self.split}.txt"
        if not listing.is_file():
            raise DataError(f"{self.root}: no shape list {listing.name} for split {self.split}")
        items, drops = [], BoxDrops()
        for shape_id in (ln.strip() for ln in listing.read_text().splitlines() if ln.strip()):
            name = shape_class(shape_id)
            drops.total += 1
            if name not in classes:   # dropped and named (the validation layer's rule), refused when none is left
                why = f"shape {shape_id} of class {name!r}, not in {names_file.name}"
                drops.drop(UNKNOWN_CLASS, why)
                self.skips.add(skip_error(str(listing), f"{why}; dropped"))
                continue
            items.append((self.root / name / f"{shape_id}.txt", classes.index(name)))
        require_usable(drops, str(listing), "shape")
        return classes, items

    def _mesh_items(self) -> tuple[list[str], list[tuple[Path, int]]]:
        classes = sorted(p.name for p in self.root.iterdir() if (p / "train").is_dir() or (p / "test").is_dir())
        items = [(path, label) for label, name in enumerate(classes)
                 for path in sorted((self.root / name / self.split).glob("*.off"))]
        return classes, items

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.items]

    def __getitem__(self, index: int) -> Sample:
        """The shape's points; a missing, malformed or degenerate file is a named skip (ImageLoadError)."""
        path, label = self.items[index]
        try:
            points = self._points(path)
        except DataError as error:
            raise as_skip(error, str(path)) from None
        return Sample(image=None, key=path.stem, points=torch.from_numpy(np.ascontiguousarray(points)),
                      image_label=label)

    def _points(self, path: Path) -> np.ndarray:
        if self.resampled:
            if not path.is_file():
                raise DataError(f"{path}: listed in the {self.split} shape list but missing")
            points = check_points(read_point_text(path), str(path))
            points = points[: self.num_points] if self.num_points else points
        else:
            points = mesh_points(path, self.num_points or DEFAULT_POINTS, zlib.crc32(path.stem.encode()))
        return points


def labels_of_points(reader: ModelNetPoints, indices: Sequence[int] | None = None) -> list[int]:
    """The class label of each (or the given) shape without reading a file."""
    labels = reader.labels
    return labels if indices is None else [labels[i] for i in indices]
