"""Hugging Face ``transformers`` CLIPModel checkpoints, converted into ordinary open_clip CLIP models.

transformers only parses config.json (its own defaults fill what the file omits); the weights are read with
safetensors or ``torch.load(weights_only=True)`` and renamed key by key onto open_clip's layout, so the result
is an open_clip ``CLIP`` on which every clipdense feature works (dense modes, CLIPSelf, adapters, saving).

Tokenizer: HF CLIP checkpoints almost always use OpenAI's CLIP BPE, which is open_clip's SimpleTokenizer (same
merges and ids; only the spelling of the two special tokens differs). When the folder's vocabulary is that one,
or the folder has no tokenizer files and the vocabulary has CLIP's 49408 entries, the model gets SimpleTokenizer
with the checkpoint's context length. Otherwise it gets the folder's (or hub repo's) own tokenizer, built by
transformers on first use. Text pooling follows transformers exactly: at the first ``eos_token_id``, or at the
largest token id for legacy configs with ``eos_token_id == 2`` (open_clip's ``eos`` / ``argmax`` pooling).
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

import torch

from ..errors import ModelLoadError
from .hub import fetch_repo_files
from .weights import read_state_dict

HF_SCHEME = "hf-transformers:"
MODEL_TYPE = "clip"
CLIP_BPE_SIZE = 49408
LEGACY_EOS = 2
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json")
PREPROCESSOR_FILE = "preprocessor_config.json"
INSTALL_HINT = "pip install 'clipdense[hf]'"
QUICK_GELU = {"quick_gelu": True, "gelu": False}  # transformers hidden_act -> open_clip quick_gelu
RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL codes in preprocessor_config.json -> open_clip interpolation
OPEN_CLIP_LN_EPS = 1e-5

# open_clip key <- transformers key, outside the blocks
GLOBAL_KEYS = (
    ("logit_scale", "logit_scale"),
    ("visual.class_embedding", "vision_model.embeddings.class_embedding"),
    ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"),
    ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"),
    ("visual.ln_pre.weight", "vision_model.pre_layrnorm.weight"),
    ("visual.ln_pre.bias", "vision_model.pre_layrnorm.bias"),
    ("visual.ln_post.weight", "vision_model.post_layernorm.weight"),
    ("visual.ln_post.bias", "vision_model.post_layernorm.bias"),
    ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
    ("ln_final.weight", "text_model.final_layer_norm.weight"),
    ("ln_final.bias", "text_model.final_layer_norm.bias"),
)
# open_clip multiplies by (in, out) parameters where transformers has (out, in) Linear weights
TRANSPOSED_KEYS = (("visual.proj", "visual_projection.weight"), ("text_projection", "text_projection.weight"))
# inside each block, with .weight and .bias; q/k/v are packed into in_proj separately
BLOCK_KEYS = (("ln_1", "layer_norm1"), ("attn.out_proj", "self_attn.out_proj"), ("ln_2", "layer_norm2"),
              ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2"))
TOWERS = (("visual.transformer.resblocks", "vision_model.encoder.layers", "vision_cfg"),
          ("transformer.resblocks", "text_model.encoder.layers", "text_cfg"))
IGNORED_SUFFIXES = ("position_ids",)  # buffers older transformers versions saved


@dataclass(frozen=True)
class ConvertedCLIP:
    """An HF CLIPModel as open_clip sees it: a config to register under ``name`` and its state dict."""

    name: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]


def is_hf_folder(path: Path) -> bool:
    """A transformers ``save_pretrained`` folder (config.json next to the weights)."""
    return path.is_dir() and (path / "config.json").is_file()


def require_transformers(what: str) -> ModuleType:
    """transformers is an optional extra; say how to get it in one line."""
    try:
        import transformers
    except ImportError as exc:
        raise ModelLoadError(f"{what}: reading a Hugging Face transformers checkpoint needs transformers: "
                             f"{INSTALL_HINT}") from exc
    return transformers


def fetch_hf_repo(repo_id: str) -> Path:
    """The local snapshot of ``repo_id`` with config, weights (safetensors preferred) and tokenizer files."""
    hint = (f"no network here? Download the folder where the internet is reachable "
            f"(huggingface-cli download {repo_id} --local-dir DIR) and pass it: load_model('DIR') or --model DIR")
    return fetch_repo_files(repo_id, "config.json", WEIGHT_FILES, (PREPROCESSOR_FILE, *TOKENIZER_FILES), hint)


def convert_folder(folder: Path, source: str, tokenizer_source: str | None = None) -> ConvertedCLIP:
    """Read an HF CLIPModel folder as an open_clip config + state dict.

    Args:
        folder: local folder with config.json and weights.
        source: how the user named it (folder path or ``hf-transformers:org/repo``), for messages.
        tokenizer_source: where transformers finds the tokenizer if it is not the CLIP BPE
            (the repo id for hub models; default the folder).
    """
    hf = read_hf_config(folder, source)
    config = open_clip_config(hf, source)
    bpe_fits = clip_bpe_fits(folder, hf.text_config)
    if not bpe_fits:
        config["text_cfg"]["hf_tokenizer_name"] = tokenizer_source or str(folder.resolve())
    preprocess = preprocess_cfg(folder)
    if preprocess:
        config["preprocess_cfg"] = preprocess
    layers = {tower: config[tower]["layers"] for _, _, tower in TOWERS}
    state = convert_state_dict(read_hf_weights(folder), layers, source)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    return ConvertedCLIP(name=f"hf-clip-{digest}", config=config, state_dict=state)


def read_hf_config(folder: Path, source: str) -> Any:
    """transformers' ``CLIPConfig`` of the folder (its defaults fill keys config.json leaves out)."""
    path = folder / "config.json"
    try:
        model_type = json.loads(path.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelLoadError(f"{path}: not a readable JSON config ({exc})") from exc
    if model_type != MODEL_TYPE:
        raise ModelLoadError(f"{path}: model_type {model_type!r}; only transformers CLIPModel folders "
                             f"(model_type '{MODEL_TYPE}') convert to open_clip")
    transformers = require_transformers(source)
    try:
        return transformers.CLIPConfig.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"{path}: transformers could not read it ({str(exc).splitlines()[0]})") from exc


def open_clip_config(hf: Any, source: str) -> dict[str, Any]:
    """The open_clip JSON config equal to an HF ``CLIPConfig``."""
    vision, text = hf.vision_config, hf.text_config
    acts = {vision.hidden_act, text.hidden_act}
    if len(acts) != 1 or not acts <= QUICK_GELU.keys():
        raise ModelLoadError(f"{source}: hidden_act {sorted(acts)}; open_clip towers share one activation, "
                             f"one of {sorted(QUICK_GELU)}")
    if vision.num_channels != 3:
        raise ModelLoadError(f"{source}: vision num_channels {vision.num_channels}; open_clip expects RGB (3)")
    vision_cfg = _tower(vision, source)  # open_clip's vision tower counts heads as width // head_width
    vision_cfg.update(head_width=vision.hidden_size // vision_cfg.pop("heads"), patch_size=vision.patch_size,
                      image_size=vision.image_size)
    text_cfg = {**_tower(text, source), "context_length": text.max_position_embeddings,
                "vocab_size": text.vocab_size}
    if text.eos_token_id != LEGACY_EOS:
        text_cfg.update(pool_type="eos", eos_id=int(text.eos_token_id))
    return {"embed_dim": hf.projection_dim, "quick_gelu": QUICK_GELU[acts.pop()],
            "vision_cfg": vision_cfg, "text_cfg": text_cfg}


def _tower(cfg: Any, source: str) -> dict[str, Any]:
    """Width, depth, heads, MLP ratio and LayerNorm eps shared by both towers' configs."""
    width, heads, hidden = cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size
    if width % heads:
        raise ModelLoadError(f"{source}: hidden_size {width} is not a multiple of num_attention_heads {heads}")
    ratio = hidden / width
    if int(width * ratio) != hidden:  # open_clip rebuilds the MLP width as int(width * mlp_ratio)
        ratio = (hidden + 0.5) / width
    out: dict[str, Any] = {"width": width, "layers": cfg.num_hidden_layers, "heads": heads, "mlp_ratio": ratio}
    if cfg.layer_norm_eps != OPEN_CLIP_LN_EPS:
        out["norm_kwargs"] = {"eps": cfg.layer_norm_eps}
    return out


def clip_bpe_fits(folder: Path, text: Any) -> bool:
    """Whether open_clip's SimpleTokenizer gives the ids this checkpoint was trained on."""
    if text.vocab_size != CLIP_BPE_SIZE or text.eos_token_id not in (LEGACY_EOS, CLIP_BPE_SIZE - 1):
        return False
    vocab = _folder_vocab(folder)
    if vocab is None:
        return True  # no tokenizer files: CLIP's vocabulary size and end token say CLIP BPE
    plain = _clip_bpe_vocab()
    return len(vocab) == CLIP_BPE_SIZE and all(vocab.get(token) == index for token, index in plain.items())


def _folder_vocab(folder: Path) -> dict[str, int] | None:
    """token -> id from vocab.json or tokenizer.json; None when the folder has neither."""
    if (folder / "vocab.json").is_file():
        return json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    if (folder / "tokenizer.json").is_file():
        model = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")).get("model", {})
        vocab = model.get("vocab")
        return vocab if isinstance(vocab, dict) else {}
    return None


@functools.lru_cache(maxsize=1)
def _clip_bpe_vocab() -> dict[str, int]:
    """open_clip's CLIP BPE without its two special tokens (transformers spells them differently)."""
    from open_clip.tokenizer import SimpleTokenizer

    return {token: index for token, index in SimpleTokenizer().encoder.items() if index < CLIP_BPE_SIZE - 2}


def preprocess_cfg(folder: Path) -> dict[str, Any]:
    """open_clip preprocess settings from ``preprocessor_config.json`` (mean, std, crop size, resampling)."""
    path = folder / PREPROCESSOR_FILE
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from exc
    out: dict[str, Any] = {}
    for ours, theirs in (("mean", "image_mean"), ("std", "image_std")):
        if raw.get(theirs):
            out[ours] = [float(v) for v in raw[theirs]]
    size = _size(raw.get("crop_size") if raw.get("do_center_crop", True) else raw.get("size"))
    if size is not None:
        out["size"] = size
    if raw.get("resample") in RESAMPLE:
        out["interpolation"] = RESAMPLE[raw["resample"]]
    return out


def _size(value: Any) -> int | list[int] | None:
    """HF sizes: an int, {'height', 'width'} or {'shortest_edge'} -> open_clip's int or [h, w]."""
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        if "height" in value and "width" in value:
            h, w = int(value["height"]), int(value["width"])
            return h if h == w else [h, w]
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
    return None


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The folder's state dict: safetensors preferred, .bin through ``torch.load(weights_only=True)``."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return read_state_dict(path)
        shards = sorted(set(json.loads(path.read_text()).get("weight_map", {}).values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(read_state_dict(folder / shard))
        return state
    raise ModelLoadError(f"{folder}: config.json but no weights (expected one of {', '.join(WEIGHT_FILES)})")


def convert_state_dict(hf: Mapping[str, torch.Tensor], layers: Mapping[str, int],
                       source: str) -> dict[str, torch.Tensor]:
    """Rename a CLIPModel state dict onto open_clip's CLIP; every key must be used exactly once."""
    taken: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in hf:
            raise ModelLoadError(f"{source}: the weights have no '{key}' (not a transformers CLIPModel "
                                 "checkpoint of this config?)")
        taken.add(key)
        return hf[key]

    out = {ours: take(theirs) for ours, theirs in GLOBAL_KEYS}
    out.update({ours: take(theirs).t().contiguous() for ours, theirs in TRANSPOSED_KEYS})
    for ours, theirs, tower in TOWERS:
        for index in range(layers[tower]):
            out.update(_block(take, f"{ours}.{index}", f"{theirs}.{index}"))
    extra = [k for k in hf if k not in taken and not k.endswith(IGNORED_SUFFIXES)]
    if extra:
        raise ModelLoadError(f"{source}: keys a CLIPModel of this config does not have: "
                             f"{extra[:3]}{' ...' if len(extra) > 3 else ''}")
    return out


def _block(take: Callable[[str], torch.Tensor], ours: str, theirs: str) -> dict[str, torch.Tensor]:
    out = {}
    for dst, src in BLOCK_KEYS:
        for param in ("weight", "bias"):
            out[f"{ours}.{dst}.{param}"] = take(f"{theirs}.{src}.{param}")
    for param in ("weight", "bias"):  # nn.MultiheadAttention packs q, k, v in this order
        out[f"{ours}.attn.in_proj_{param}"] = torch.cat([take(f"{theirs}.self_attn.{x}_proj.{param}")
                                                        for x in "qkv"])
    return out
