"""One configuration system: dataclasses, overridden once by a YAML file, then by CLI flags."""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, TypeVar, get_type_hints

import yaml

from .errors import ConfigError

T = TypeVar("T")


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Coerce YAML/CLI values to the field's declared scalar type, so '3' works for an int."""
    if value is None:
        return None
    origin = getattr(hint, "__origin__", None)
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
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


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


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Write the resolved configuration as YAML (atomically)."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    atomic_write_bytes(path, text.encode())
