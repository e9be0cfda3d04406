"""One configuration system: dataclasses, overridden once by a YAML file, then by CLI flags."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, TypeVar, get_type_hints

import yaml

from .errors import ConfigError

T = TypeVar("T")


def _finite(name: str, value: Any) -> Any:
    """``value``, refused in one line when it is (or holds) a NaN or an infinity: no setting means one."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(v, float) and not math.isfinite(v) for v in items):
        raise ConfigError(f"config key '{name}': expected a finite number, got {value!r}")
    return value


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Coerce YAML/CLI values to the field's declared scalar type, so '3' works for an int; NaN and infinities
    are refused."""
    return _finite(name, _coerce_type(name, value, hint))


def _coerce_type(name: str, value: Any, hint: Any) -> Any:
    if value is None:
        return None
    origin = getattr(hint, "__origin__", None)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint is int and isinstance(value, float):
        raise ConfigError(f"config key '{name}': expected int, got {value!r}")
    if hint in (int, float, str) and not isinstance(value, hint):
        try:
            return hint(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config key '{name}': expected {hint.__name__}, got {value!r}") from exc
    if hint is bool and isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"config key '{name}': expected a boolean, got {value!r}")
    if origin in (list, tuple) and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        return _coerce_items(name, value, getattr(hint, "__args__", ()))
    return value


def _coerce_items(name: str, value: list | tuple, args: tuple) -> list:
    """Items of a ``list[float]`` / ``tuple[float, float]`` field as numbers ('0.5,1' from a flag works too), the
    tuple's length checked."""
    fixed = [a for a in args if a is not Ellipsis]
    if fixed and Ellipsis not in args and len(fixed) > 1 and len(value) != len(fixed):
        raise ConfigError(f"config key '{name}': expected {len(fixed)} values, got {list(value)!r}")
    kinds = fixed if len(fixed) == len(value) else fixed[:1] * len(value)
    return [_coerce_type(name, item, kind) if kind in (int, float) else item for item, kind in zip(value, kinds)]


def build_config(cls: type[T], yaml_path: str | os.PathLike | None = None,
                 overrides: Mapping[str, Any] | None = None, defaults: Mapping[str, Any] | None = None) -> T:
    """Defaults of ``cls`` (updated by ``defaults``, e.g. a command's own), then keys of the YAML file,
    then non-None ``overrides`` (CLI flags).

    Unknown keys are an error naming the key and the known ones: a typo must never be ignored.
    """
    values: dict[str, Any] = dict(defaults or {})
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise ConfigError(f"--config {path}: file not found")
        loaded = read_yaml(path, "--config") or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config {path}: expected a mapping of key: value at top level")
        values.update(loaded)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} for {cls.__name__}; known: {sorted(known)}")
    coerced = {k: _coerce(k, v, hints.get(k)) for k, v in values.items()}
    return cls(**coerced)


def read_yaml(path: str | os.PathLike, flag: str) -> Any:
    """Parse a YAML file; a syntax error is one line naming the file, line and column (PyYAML's is four)."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{flag} {path}: not a text file ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{flag} {path}: not valid YAML{where}: {problem}") from exc


def current_umask() -> int:
    """The process umask (Linux reads it without changing it; elsewhere it is set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a file made by mkstemp (0600) or a folder made by mkdtemp (0700) the mode a plain open() or
    mkdir() would have: 0666 / 0777 less the user's umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain dict of a config dataclass, JSON/YAML friendly."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temp file in the same folder then rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        apply_umask(tmp)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save_picture(picture: Any, path: str | os.PathLike) -> Path:
    """Save a PIL image atomically (encoded in memory, then ``atomic_write_bytes``), in the format its suffix
    names, so an interrupted or failed save never leaves half a picture where the user looks for it."""
    import io

    from PIL import Image

    path = Path(path)
    kind = Image.registered_extensions().get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"{path}: expected a picture file (.png, .jpg, ...), got suffix {path.suffix!r}")
    if kind == "JPEG" and picture.mode not in ("RGB", "L", "CMYK"):
        picture = picture.convert("RGB")   # JPEG holds no alpha
    buffer = io.BytesIO()
    picture.save(buffer, format=kind)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Write the resolved configuration as YAML (atomically)."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    atomic_write_bytes(path, text.encode())
