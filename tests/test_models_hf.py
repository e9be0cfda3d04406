"""Hugging Face transformers CLIP folders and SigLIP offline: converted models equal transformers' forward."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import open_clip
import pytest
import torch
from PIL import Image

import clipdense as cd
from clipdense.cli.main import main
from clipdense.models import model_config
from clipdense.models.hf_transformers import clip_bpe_fits
from clipdense.models.registry import register_config
from clipdense.models.text_tokenizer import LazyHFTokenizer

transformers = pytest.importorskip("transformers")

PROMPTS = ["a photo of a cat", "dog", "a red circle next to a blue square"]
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def _save_hf_clip(folder: Path, hidden_act: str = "quick_gelu", eos: int = 49407, vocab: int = 49408,
                  eps: float = 1e-5, weights: str = "safetensors") -> transformers.CLIPModel:
    """A tiny random CLIPModel saved as transformers does; every parameter perturbed so LayerNorms and
    biases are not at their identity init (a wrong mapping of any of them shows)."""
    tower = dict(hidden_size=32, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                 hidden_act=hidden_act, layer_norm_eps=eps)
    config = transformers.CLIPConfig(
        text_config=dict(tower, vocab_size=vocab, max_position_embeddings=16, eos_token_id=eos),
        vision_config=dict(tower, image_size=32, patch_size=8), projection_dim=24)
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    if weights == "safetensors":
        model.save_pretrained(folder)
    else:  # what save_pretrained(safe_serialization=False) writes (transformers 5 writes safetensors only)
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return model


def _hf_image(model, pixels: torch.Tensor) -> torch.Tensor:
    out = model.get_image_features(pixel_values=pixels)
    return getattr(out, "pooler_output", out)  # transformers 5 returns an output object


def _hf_text(model, ids: torch.Tensor) -> torch.Tensor:
    out = model.get_text_features(input_ids=ids)
    return getattr(out, "pooler_output", out)


def _tiny_tokenizer(folder: Path) -> int:
    """A word-level tokenizer trained offline, saved as transformers does; returns its eos id."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(PROMPTS * 3, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                         unk_token="<unk>").save_pretrained(folder)
    return eos


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf-clip")
    model = _save_hf_clip(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_mean": MEAN, "image_std": STD, "crop_size": {"height": 32, "width": 32}, "do_center_crop": True,
        "size": {"shortest_edge": 32}, "resample": 2}))
    return folder, model


@pytest.mark.parametrize("variant", [
    {},  # OpenAI-style: quick_gelu, pooled at the first eos_token_id
    {"hidden_act": "gelu", "eos": 2, "eps": 1e-6},  # legacy configs pool at the largest id; other LN eps
])
def test_converted_model_equals_transformers_forward(tmp_path, variant):
    model = _save_hf_clip(tmp_path, **variant)
    bundle = cd.load_model(tmp_path, device="cpu")
    assert isinstance(bundle.model, open_clip.CLIP) and bundle.name.startswith("hf-clip-")
    pixels = torch.randn(2, 3, 32, 32)
    ids = bundle.tokenizer(PROMPTS)
    assert ids.shape == (3, 16)  # the checkpoint's context length
    assert torch.equal(ids, open_clip.SimpleTokenizer(context_length=16)(PROMPTS))
    with torch.no_grad():
        torch.testing.assert_close(bundle.model.encode_image(pixels), _hf_image(model, pixels),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(bundle.model.encode_text(ids), _hf_text(model, ids), atol=1e-5, rtol=0)
        torch.testing.assert_close(bundle.model.logit_scale, model.logit_scale)


def test_preprocess_follows_preprocessor_config(hf_folder):
    folder, _ = hf_folder
    bundle = cd.load_model(folder, device="cpu")
    cfg = open_clip.get_model_preprocess_cfg(bundle.model)
    assert list(cfg["mean"]) == MEAN and list(cfg["std"]) == STD and cfg["interpolation"] == "bilinear"
    pixels = bundle.preprocess(Image.new("RGB", (48, 40), (255, 0, 128)))
    assert pixels.shape == (3, 32, 32)
    expected = (torch.tensor([1.0, 0.0, 128 / 255]) - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(pixels[:, 16, 16], expected, atol=1e-5, rtol=0)


def test_bin_weights_load_like_safetensors(tmp_path, hf_folder):
    _save_hf_clip(tmp_path, weights="bin")
    assert not (tmp_path / "model.safetensors").exists()
    from_bin = cd.load_model(tmp_path, device="cpu").model.state_dict()
    from_safetensors = cd.load_model(hf_folder[0], device="cpu").model.state_dict()
    assert from_bin.keys() == from_safetensors.keys()
    for key, value in from_bin.items():
        assert torch.equal(value, from_safetensors[key]), key


def test_sharded_checkpoint_loads_like_one_file(tmp_path, hf_folder):
    from safetensors.torch import load_file, save_file

    state = load_file(hf_folder[0] / "model.safetensors")
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, tmp_path / name)
    weight_map = {k: name for name, part in shards.items() for k in part}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "config.json").write_bytes((hf_folder[0] / "config.json").read_bytes())
    sharded = cd.load_model(tmp_path, device="cpu").model.state_dict()
    for key, value in cd.load_model(hf_folder[0], device="cpu").model.state_dict().items():
        assert torch.equal(value, sharded[key]), key


def test_bin_with_arbitrary_objects_is_refused(tmp_path):
    _save_hf_clip(tmp_path, weights="bin")
    state = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    torch.save({**state, "payload": _Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(cd.ModelLoadError, match="could not read weights"):
        cd.load_model(tmp_path, device="cpu")


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled",))


def test_without_transformers_one_line_says_how_to_install(hf_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(cd.ModelLoadError, match=r"pip install 'clipdense\[hf\]'") as info:
        cd.load_model(hf_folder[0], device="cpu")
    assert "\n" not in str(info.value)


def test_other_model_types_and_missing_weights_are_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "siglip"}))
    with pytest.raises(cd.ModelLoadError, match="model_type 'siglip'; only transformers CLIPModel"):
        cd.load_model(tmp_path, device="cpu")
    transformers.CLIPConfig().save_pretrained(tmp_path)
    with pytest.raises(cd.ModelLoadError, match="config.json but no weights"):
        cd.load_model(tmp_path, device="cpu")


@pytest.mark.slow   # a fresh interpreter
def test_clipdense_checkpoint_of_converted_model_reloads(tmp_path, hf_folder):
    bundle = cd.load_model(hf_folder[0], device="cpu")
    path = tmp_path / "converted.safetensors"
    cd.save_weights(bundle.model, path, bundle.name, model_config(bundle.name))
    code = ("import sys, open_clip, clipdense as cd\n"
            "b = cd.load_model(sys.argv[1], device='cpu')\n"
            "cfg = open_clip.get_model_preprocess_cfg(b.model)\n"
            "print(b.name, list(cfg['mean']), tuple(b.tokenizer(['a cat']).shape))\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert out.stdout.split("\n")[0] == f"{bundle.name} {MEAN} (1, 16)", out.stderr[-2000:]
    reloaded = cd.load_model(path, device="cpu")  # in this process too (name already registered)
    for key, value in bundle.model.state_dict().items():
        assert torch.equal(value, reloaded.model.state_dict()[key]), key


def test_cli_segments_with_an_hf_folder(tmp_path, hf_folder, capsys):
    image = tmp_path / "img.png"
    Image.new("RGB", (40, 32), (200, 30, 30)).save(image)
    out = tmp_path / "seg.png"
    code = main(["segment", str(image), "--model", str(hf_folder[0]), "--classes", "a,b", "--out", str(out),
                 "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert out.is_file() and Image.open(tmp_path / "seg_labels.png").size == (40, 32)


def test_hub_id_offline_fails_fast_naming_the_folder_route():
    start = time.perf_counter()
    with pytest.raises(cd.ModelLoadError, match=r"huggingface-cli download org/no-such-clip --local-dir DIR\) "
                                                r"and pass it: load_model\('DIR'\)") as info:
        cd.load_model("hf-transformers:org/no-such-clip", device="cpu")
    assert time.perf_counter() - start < 10 and "\n" not in str(info.value)


def test_hub_id_loads_from_the_hugging_face_cache_offline(tmp_path, hf_folder, monkeypatch):
    import huggingface_hub.constants

    snapshot = tmp_path / "models--org--tiny-clip" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        (snapshot / name).write_bytes((hf_folder[0] / name).read_bytes())
    (tmp_path / "models--org--tiny-clip" / "refs").mkdir()
    (tmp_path / "models--org--tiny-clip" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    from_hub = cd.load_model("hf-transformers:org/tiny-clip", device="cpu")
    from_folder = cd.load_model(hf_folder[0], device="cpu")
    assert from_hub.name == from_folder.name and from_hub.pretrained == "hf-transformers:org/tiny-clip"
    for key, value in from_folder.model.state_dict().items():
        assert torch.equal(value, from_hub.model.state_dict()[key]), key


def test_own_vocabulary_uses_the_folder_tokenizer_and_eos_pooling(tmp_path):
    eos = _tiny_tokenizer(tmp_path)
    model = _save_hf_clip(tmp_path, vocab=32, eos=eos)
    bundle = cd.load_model(tmp_path, device="cpu")
    assert isinstance(bundle.tokenizer, LazyHFTokenizer) and bundle.tokenizer.source == str(tmp_path.resolve())
    ids = bundle.tokenizer(PROMPTS)
    assert ids.shape == (3, 16) and (ids == eos).any(1).all()
    with torch.no_grad():
        torch.testing.assert_close(bundle.model.encode_text(ids), _hf_text(model, ids), atol=1e-5, rtol=0)


def test_clip_bpe_vocabulary_is_recognised(tmp_path):
    text = transformers.CLIPTextConfig(vocab_size=49408, eos_token_id=49407)
    encoder = open_clip.SimpleTokenizer().encoder
    vocab = {token: index for token, index in encoder.items() if index < 49406}
    vocab.update({"<|startoftext|>": 49406, "<|endoftext|>": 49407})  # transformers' spelling
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    assert clip_bpe_fits(tmp_path, text)
    vocab["cat</w>"], vocab["dog</w>"] = vocab["dog</w>"], vocab["cat</w>"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    assert not clip_bpe_fits(tmp_path, text)


TINY_SIGLIP = {  # SigLIP's layout (timm image tower, HF tokenizer named in text_cfg) at toy size
    "embed_dim": 192, "init_logit_bias": -10, "custom_text": True,
    "vision_cfg": {"image_size": 224, "timm_model_name": "vit_tiny_patch16_224", "timm_model_pretrained": False,
                   "timm_pool": "map", "timm_proj": "none"},
    "text_cfg": {"context_length": 8, "vocab_size": 32, "hf_tokenizer_name": "timm/ViT-B-16-SigLIP",
                 "tokenizer_kwargs": {"clean": "canonicalize"}, "width": 32, "heads": 2, "layers": 1,
                 "no_causal_mask": True, "proj_bias": True, "pool_type": "last", "norm_kwargs": {"eps": 1e-6}},
}


@pytest.fixture(scope="module")
def tiny_siglip_name():
    register_config("test-tiny-siglip", TINY_SIGLIP)
    return "test-tiny-siglip"


def test_siglip_image_tower_works_offline_and_text_names_the_files():
    bundle = cd.load_model("ViT-B-16-SigLIP", device="cpu")
    with torch.no_grad():
        assert bundle.model.encode_image(torch.randn(1, 3, 224, 224)).shape == (1, 768)
    start = time.perf_counter()
    with pytest.raises(cd.ModelLoadError, match="tokenizer files of hf-hub repo timm/ViT-B-16-SigLIP: "
                                                "tokenizer_config.json \\+ tokenizer.json") as info:
        bundle.tokenizer(["a cat"])
    message = str(info.value)
    assert "tokenizer='/path/to/folder'" in message and "\n" not in message
    assert time.perf_counter() - start < 10


def test_local_tokenizer_folder_serves_siglip_text(tmp_path, tiny_siglip_name):
    _tiny_tokenizer(tmp_path)
    bundle = cd.load_model(tiny_siglip_name, device="cpu", tokenizer=tmp_path)
    ids = bundle.tokenizer(["A Photo of a cat!"])  # SigLIP's canonicalising clean: lower case, no punctuation
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path)(["a photo of a cat"], padding="max_length",
                                                                      max_length=8).input_ids
    assert ids.tolist() == reference
    with torch.no_grad():
        assert bundle.model.encode_text(ids).shape == (1, 192)
    clone = pickle.loads(pickle.dumps(bundle.tokenizer))  # data-loader workers get the recipe
    assert torch.equal(clone(["A Photo of a cat!"]), ids)


def test_siglip_tokenizer_without_transformers_says_how_to_install(tiny_siglip_name, monkeypatch):
    bundle = cd.load_model(tiny_siglip_name, device="cpu")
    with torch.no_grad():
        assert bundle.model.encode_image(torch.randn(1, 3, 224, 224)).shape == (1, 192)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(cd.ModelLoadError, match=r"timm/ViT-B-16-SigLIP.*pip install 'clipdense\[hf\]'"):
        bundle.tokenizer(["a cat"])
