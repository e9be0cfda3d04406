"""load_model: built-in names, local files, run dirs, and the errors a user will meet."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import clipdense as cd
from clipdense.models import model_config


def test_builtin_models_load_with_tokenizer_and_preprocess(tiny_bundle):
    assert tiny_bundle.image_size == (64, 64)
    assert tiny_bundle.tokenizer(["a red circle"]).shape == (1, 32)
    params = sum(p.numel() for p in cd.load_model("tiny-vit-s8", device="cpu").model.parameters())
    assert 2e6 < params < 12e6


def test_safetensors_roundtrip_is_self_describing(tmp_path, tiny_bundle):
    path = tmp_path / "w.safetensors"
    cd.save_weights(tiny_bundle.model, path, "tiny-vit-t8", model_config("tiny-vit-t8"))
    loaded = cd.load_model(path, device="cpu")
    assert loaded.name == "tiny-vit-t8"
    for (k, a), b in zip(tiny_bundle.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_torch_state_dict_for_named_architecture(tmp_path, tiny_bundle):
    path = tmp_path / "open_clip_model.bin"
    torch.save({"state_dict": {f"module.{k}": v for k, v in tiny_bundle.model.state_dict().items()}}, path)
    loaded = cd.load_model("tiny-vit-t8", pretrained=str(path), device="cpu")
    torch.testing.assert_close(loaded.model.logit_scale, tiny_bundle.model.logit_scale)


def test_run_dir_loads_latest_checkpoint(tmp_path):
    own = cd.load_model("tiny-vit-t8", device="cpu")      # not the shared fixture: this test changes the weights
    for step in (5, 10):
        folder = tmp_path / "checkpoints" / f"step-{step:08d}"
        with torch.no_grad():
            own.model.logit_scale.fill_(float(step))
        cd.save_weights(own.model, folder / "model.safetensors", "tiny-vit-t8")
    assert float(cd.load_model(tmp_path, device="cpu").model.logit_scale.detach()) == 10.0


def test_wrong_checkpoint_names_the_mismatch(tmp_path, tiny_bundle):
    path = tmp_path / "other.safetensors"
    cd.save_weights(cd.load_model("tiny-vit-s8", device="cpu").model, path, "tiny-vit-s8")
    with pytest.raises(cd.ModelLoadError, match="wrong shapes .*visual"):
        cd.load_model("tiny-vit-t8", pretrained=str(path), device="cpu")
    with pytest.raises(cd.ModelLoadError, match="not found"):
        cd.load_model("tiny-vit-t8", pretrained=str(tmp_path / "missing.safetensors"))


def test_unknown_names_and_tags():
    with pytest.raises(cd.ModelLoadError, match="did you mean"):
        cd.load_model("tiny-vit-s9")
    with pytest.raises(cd.ModelLoadError, match="unknown pretrained tag"):
        cd.load_model("tiny-vit-t8", pretrained="laion9000")


@pytest.mark.slow   # a fresh interpreter
def test_offline_pretrained_tag_fails_fast_with_hint():
    code = ("import clipdense as cd\n"
            "try:\n cd.load_model('ViT-B-32', pretrained='openai', device='cpu')\n"
            "except cd.ModelLoadError as e: print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert "ERR could not fetch weights for ViT-B-32 pretrained=openai" in out.stdout
    assert "--pretrained /path/to/file" in out.stdout


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = cd.load_model("tiny-vit-t8", device="cpu")
    assert torch.equal(torch.rand(1), expected_next)
    b = cd.load_model("tiny-vit-t8", device="cpu")
    c = cd.load_model("tiny-vit-t8", device="cpu", init_seed=1)
    assert torch.equal(a.model.visual.proj, b.model.visual.proj)
    assert not torch.equal(a.model.visual.proj, c.model.visual.proj)


def test_local_dir_schema_errors_name_the_folder(tmp_path):
    with pytest.raises(cd.ModelLoadError, match="could not load local-dir:.*not found"):
        cd.load_model(f"local-dir:{tmp_path / 'missing'}", device="cpu")
