"""``load_model``: one entry point for open_clip names/tags, hf-hub ids, Hugging Face transformers CLIP
folders, local files and run dirs."""
from __future__ import annotations

import difflib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from torch import nn

from ..errors import ModelLoadError
from .families import ModelFamily, family_models, family_of_config, family_of_name
from .hf_transformers import HF_SCHEME, convert_folder, fetch_hf_repo, is_hf_folder
from .hub import offline_when_unreachable
from .registry import (PREPROCESS_KEY, builtin_models, register_builtin_configs, register_config,
                       registered_preprocess, shipped_weights)
from .text_tokenizer import build_tokenizer
from .weights import META_DENSE_SIZE, META_FORMAT, META_MODEL_CONFIG, META_MODEL_NAME, WEIGHT_SUFFIXES, load_into, \
    load_error_line, read_metadata, read_state_dict

OFFLINE_HINT = ("no network here? Download the weights where the internet is reachable, then pass the file: "
                "load_model(NAME, pretrained='/path/to/open_clip_model.safetensors') or "
                "`--model NAME --pretrained /path/to/file`")


@dataclass
class Bundle:
    """A loaded model with everything needed to use it."""

    model: nn.Module
    tokenizer: Callable[..., torch.Tensor]
    preprocess: Callable[[Any], torch.Tensor]
    name: str
    pretrained: str | None
    image_size: tuple[int, int]
    #: the input side dense features are meant to be read at (a CLIPSelf student's training size, recorded in
    #: its weights); None: the model's own ``image_size``
    dense_size: int | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means CUDA when available, else CPU; an unavailable CUDA request is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    return device


def load_model(spec: str | os.PathLike, pretrained: str | os.PathLike | None = None,
               device: str | torch.device | None = None, init_seed: int = 0,
               tokenizer: str | os.PathLike | None = None) -> Bundle:
    """Load a CLIP model.

    Args:
        spec: open_clip model name, ``hf-hub:org/repo``, ``local-dir:/path`` (open_clip's folder with
            open_clip_config.json and weights), a Hugging Face transformers CLIP folder (config.json +
            model.safetensors or pytorch_model.bin) or ``hf-transformers:org/repo``, built-in tiny name,
            a clipdense ``.safetensors`` file, or a clipdense run directory.
        pretrained: open_clip pretrained tag, shipped tag of a tiny model, or a local weights file.
        device: torch device (default: CUDA when available).
        init_seed: seed of the random initialisation (weights not loaded from a file stay random):
            the same seed gives the same model, and the caller's global RNG is left untouched.
        tokenizer: a local Hugging Face tokenizer folder (or hub repo id) to use instead of the model's
            own, e.g. SigLIP's tokenizer files copied to a machine without internet. Hugging Face
            tokenizers are built on first use, so image-only work never needs them.
    """
    register_builtin_configs()
    target = resolve_device(device)
    spec_str = str(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        if spec_str.startswith(HF_SCHEME):
            _no_pretrained(spec_str, pretrained)
            repo = spec_str[len(HF_SCHEME):]
            bundle = _load_hf_folder(fetch_hf_repo(repo), spec_str, tokenizer, tokenizer_source=repo)
        elif spec_str.startswith(("hf-hub:", "local-dir:")):  # open_clip's own schemas
            bundle = _load_open_clip(spec_str, None, tokenizer)
        elif Path(spec_str).exists():
            bundle = _load_path(Path(spec_str), pretrained, tokenizer)
        else:
            bundle = _load_named(spec_str, None if pretrained is None else str(pretrained), tokenizer)
    bundle.model.to(target).eval()
    return bundle


def _create(name: str, pretrained: str | None = None, **overrides: Any) -> tuple[nn.Module, Callable]:
    """open_clip model + validation transform, translating download failures into a clear error.
    ``overrides`` are model-config keys (e.g. ``init_logit_bias``) applied over the named config."""
    try:
        with offline_when_unreachable():
            model = open_clip.create_model(name, pretrained=pretrained,
                                           force_preprocess_cfg=registered_preprocess(name), **overrides)
    except (OSError, RuntimeError, ValueError, ConnectionError, KeyError, EOFError, pickle.UnpicklingError) as exc:
        if pretrained is None and not name.startswith(("hf-hub:", "local-dir:")):
            raise
        what = name if pretrained is None else f"{name} pretrained={pretrained}"
        first = load_error_line(exc)   # a refused pickle says so, without torch's advice to allow it
        if name.startswith("local-dir:"):
            raise ModelLoadError(f"could not load {name}: {first}") from exc
        raise ModelLoadError(f"could not fetch weights for {what} ({first}); {OFFLINE_HINT}") from exc
    # the validation transform open_clip.create_model_and_transforms builds, from the model's preprocess_cfg
    preprocess = image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False)
    return model, preprocess


def _bundle(model: nn.Module, preprocess: Callable, name: str, pretrained: str | None,
            tokenizer: Callable[..., torch.Tensor]) -> Bundle:
    image_size = model.visual.image_size
    size = tuple(image_size) if isinstance(image_size, (tuple, list)) else (image_size, image_size)
    return Bundle(model=model, tokenizer=tokenizer, preprocess=preprocess,
                  name=name, pretrained=pretrained, image_size=(int(size[0]), int(size[1])))


def _load_open_clip(name: str, pretrained: str | None, tokenizer: str | os.PathLike | None = None) -> Bundle:
    model, preprocess = _create(name, pretrained)
    if name.startswith(("hf-hub:", "local-dir:")) and tokenizer is None:  # their config lives with the weights
        with offline_when_unreachable():
            text = open_clip.get_tokenizer(name)
    else:
        text = build_tokenizer(name, tokenizer)
    return _bundle(model, preprocess, name, pretrained, text)


def _check_name(name: str) -> None:
    known = open_clip.list_models()
    if name not in known and ("/" in name or os.sep in name or Path(name).suffix in WEIGHT_SUFFIXES + (".ckpt",)):
        raise ModelLoadError(f"{name}: no such file or folder (a model is an open_clip name, a built-in tiny name, "
                             "hf-hub:org/repo, or an existing weights file or run folder)")
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {close}?" if close else "; see `clipdense info` for the list"
        raise ModelLoadError(f"unknown model '{name}'{hint}")


def _load_named(name: str, pretrained: str | None, tokenizer: str | os.PathLike | None = None) -> Bundle:
    family = family_of_name(name)
    if family is not None:   # an architecture that is not an open_clip CLIP (GroupViT)
        return _load_family_named(family, name, pretrained, tokenizer)
    _check_name(name)
    if pretrained is None:
        return _load_open_clip(name, None, tokenizer)
    if Path(pretrained).suffix in WEIGHT_SUFFIXES or Path(pretrained).exists():
        if Path(pretrained).suffix == ".safetensors" and Path(pretrained).is_file():
            refuse_non_model(Path(pretrained), read_metadata(Path(pretrained)))   # a head is not weights
        return _load_file_into(name, Path(pretrained), tokenizer=tokenizer)
    shipped = shipped_weights()
    if (name, pretrained) in shipped:
        return _load_file_into(name, shipped[(name, pretrained)], tag=pretrained, tokenizer=tokenizer)
    tags = open_clip.list_pretrained_tags_by_model(name) + [t for (n, t) in shipped if n == name]
    if pretrained not in tags:
        raise ModelLoadError(f"unknown pretrained tag '{pretrained}' for {name}; known tags: {tags or 'none'} "
                             "(or pass a local weights file)")
    return _load_open_clip(name, pretrained, tokenizer)


def _load_file_into(name: str, path: Path, tag: str | None = None,
                    tokenizer: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> Bundle:
    """Build ``name`` (with ``overrides`` of its config) with random weights, then strictly load the file into it."""
    model, preprocess = _create(name, None, **(overrides or {}))
    load_into(model, read_state_dict(path), str(path))
    return _bundle(model, preprocess, name, tag or str(path), build_tokenizer(name, tokenizer))


def _load_family(family: ModelFamily, name: str, config: dict[str, Any], weights: Path | None,
                 tag: str | None, tokenizer: str | os.PathLike | None) -> Bundle:
    """A model of a registered family (``models.families``), with random weights or strictly loaded from a file."""
    model, preprocess, text = family.create(name, config, None if tokenizer is None else str(tokenizer))
    if weights is not None:
        load_into(model, read_state_dict(weights), str(weights))
    return _bundle(model, preprocess, name, tag or (None if weights is None else str(weights)), text)


def _load_family_named(family: ModelFamily, name: str, pretrained: str | None,
                       tokenizer: str | os.PathLike | None) -> Bundle:
    config = family.config(name) or {}
    if pretrained is None:
        return _load_family(family, name, config, None, None, tokenizer)
    if Path(pretrained).suffix in WEIGHT_SUFFIXES or Path(pretrained).exists():
        return _load_family(family, name, config, Path(pretrained), None, tokenizer)
    shipped = shipped_weights()
    if (name, pretrained) not in shipped:
        tags = [t for (n, t) in shipped if n == name]
        raise ModelLoadError(f"unknown pretrained tag '{pretrained}' for {name}; known tags: {tags or 'none'} "
                             "(or pass a local weights file)")
    return _load_family(family, name, config, shipped[(name, pretrained)], pretrained, tokenizer)


def _load_hf_folder(folder: Path, source: str, tokenizer: str | os.PathLike | None,
                    tokenizer_source: str | None = None) -> Bundle:
    """Convert a transformers CLIPModel folder into an open_clip CLIP registered under a content-hash name."""
    converted = convert_folder(folder, source, tokenizer_source)
    register_config(converted.name, converted.config)
    model, preprocess = _create(converted.name, None)
    load_into(model, converted.state_dict, source)
    return _bundle(model, preprocess, converted.name, source, build_tokenizer(converted.name, tokenizer))


def _no_pretrained(spec: str, pretrained: str | os.PathLike | None) -> None:
    if pretrained is not None:
        raise ModelLoadError(f"{spec}: a file, folder or run dir already holds weights; "
                             f"drop --pretrained {pretrained}")


def _load_path(path: Path, pretrained: str | os.PathLike | None,
               tokenizer: str | os.PathLike | None = None) -> Bundle:
    _no_pretrained(str(path), pretrained)
    if is_hf_folder(path):
        return _load_hf_folder(path, str(path), tokenizer)
    if path.is_dir():
        path = latest_run_weights(path)
    if path.suffix != ".safetensors":
        raise ModelLoadError(f"{path}: a .pt/.bin file does not name its architecture; "
                             "pass the model name and the file: --model NAME --pretrained FILE")
    metadata = read_metadata(path)
    name = metadata.get(META_MODEL_NAME)
    refuse_non_model(path, metadata)
    if not name:
        raise ModelLoadError(f"{path}: no '{META_MODEL_NAME}' metadata (not written by clipdense); "
                             "pass the model name and the file: --model NAME --pretrained FILE")
    stored = json.loads(metadata[META_MODEL_CONFIG]) if META_MODEL_CONFIG in metadata else None
    family = family_of_config(stored) or (family_of_name(name) if stored is None else None)
    if family is not None:   # GroupViT and other non-CLIP families rebuild from their stored config
        family.register(name, stored or family.config(name) or {})
        return _load_family(family, name, stored or family.config(name) or {}, path, None, tokenizer)
    if name not in open_clip.list_models() and META_MODEL_CONFIG in metadata:
        register_config(name, json.loads(metadata[META_MODEL_CONFIG]))
    bundle = _load_file_into(name, path, tokenizer=tokenizer, overrides=_added_by_training(name, stored))
    if metadata.get(META_DENSE_SIZE, "").isdigit():
        bundle.dense_size = int(metadata[META_DENSE_SIZE])
    return bundle


def _added_by_training(name: str, stored: dict[str, Any] | None) -> dict[str, Any]:
    """Config keys an objective added to a known architecture (a sigmoid loss's ``init_logit_bias``: the weights
    then hold a ``logit_bias`` the named config lacks), so the model is rebuilt with them."""
    known = open_clip.get_model_config(name) or {}
    if stored and "init_logit_bias" in stored and "init_logit_bias" not in known:
        return {"init_logit_bias": stored["init_logit_bias"]}
    return {}


def refuse_non_model(path: Path, metadata: dict[str, str]) -> None:
    """A clipdense file that is not a model's weights (a head, an adapter, a VQGAN) refused in one line naming
    its kind and what was expected, instead of a list of missing keys."""
    if metadata.get(META_MODEL_NAME) or not metadata.get(META_FORMAT):
        return
    kind = metadata.get("clipdense.head.kind")
    what = f"a {kind} head file" if kind else f"a clipdense '{metadata[META_FORMAT]}' file"
    raise ModelLoadError(f"{path}: {what}, not a model; expected CLIP weights (a head loads with --head / --adapter "
                         "/ load_head(path, bundle) on the backbone it was trained on)")


def latest_run_weights(run_dir: Path) -> Path:
    """The newest ``checkpoints/step-*/model.safetensors`` of a run (or a ``model.safetensors`` in the dir)."""
    steps = sorted((run_dir / "checkpoints").glob("step-*/model.safetensors"))
    if steps:
        return steps[-1]
    if (run_dir / "model.safetensors").is_file():
        return run_dir / "model.safetensors"
    if any((run_dir / "checkpoints").glob("step-*/head.safetensors")):
        raise ModelLoadError(f"{run_dir}: a run folder that trained a head, not a model; expected CLIP weights (the "
                             "head loads with --head / --adapter on the backbone it was trained on)")
    raise ModelLoadError(f"{run_dir}: not a clipdense run dir (no checkpoints/step-*/model.safetensors)")


def model_config(name: str) -> dict[str, Any] | None:
    """The open_clip JSON config for ``name`` (stored in checkpoints so they describe themselves), with the
    registered ``preprocess_cfg`` of converted models (their mean/std travel with their weights)."""
    register_builtin_configs()
    family = family_of_name(name)
    if family is not None:
        return family.config(name)
    config = open_clip.get_model_config(name)
    if config is None:
        return None
    preprocess = registered_preprocess(name)
    return {**config, PREPROCESS_KEY: preprocess} if preprocess else dict(config)


def available_models() -> dict[str, list[str]]:
    """Built-in tiny models and all open_clip architectures, for `clipdense info`."""
    register_builtin_configs()
    builtin = builtin_models() + family_models()
    return {"builtin": builtin, "open_clip": [m for m in open_clip.list_models() if m not in builtin]}
