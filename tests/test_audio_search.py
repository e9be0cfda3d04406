"""`cd.search` / `clipdense search DIR "sentence" | --audio SOUND.wav`: the images ranked by the cosine to the query,
checked against the order computed by hand from each image's own embedding."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import clipdense as cd
from clipdense.cli.main import main
from clipdense.data.audio import read_audio, write_wav
from clipdense.errors import ConfigError
from clipdense.tasks.audio import AUDIO_WEIGHTS_DIR
from clipdense.tasks.search import rank

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "grey": (128, 128, 128)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four flat-colour images, one in a subfolder (the search is recursive), and a README that is not an image."""
    root = tmp_path_factory.mktemp("search")
    (root / "sub").mkdir()
    for i, (name, rgb) in enumerate(COLOURS.items()):
        target = root / "sub" if i == 3 else root
        Image.new("RGB", (40, 40), rgb).save(target / f"{name}.png")
    (root / "README.txt").write_text("not an image\n")
    return root


def _by_hand(bundle, paths: list[Path], query: torch.Tensor) -> list[tuple[str, float]]:
    """Cosine of each image's own embedding (one forward each) with the query, sorted best first."""
    scores = []
    for path in paths:
        with torch.no_grad():
            x = bundle.model.encode_image(bundle.preprocess(Image.open(path).convert("RGB"))[None])
        scores.append((path.name, float(F.normalize(x.float(), dim=-1)[0] @ F.normalize(query, dim=0))))
    return sorted(scores, key=lambda item: -item[1])


def test_rank_by_hand() -> None:
    images = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 0.0]])   # norms do not matter
    ranked = rank(torch.tensor([2.0, 1.0]), images)
    # cosines with (2, 1)/sqrt(5): 2/sqrt5 = .894, 1/sqrt5 = .447, 3/sqrt10 = .949, -.894
    assert [i for i, _ in ranked] == [2, 0, 1, 3]
    assert ranked[0][1] == pytest.approx(3 / 10 ** 0.5) and ranked[3][1] == pytest.approx(-2 / 5 ** 0.5)
    assert [i for i, _ in rank(torch.tensor([1.0, 0.0]), torch.tensor([[0.0, 1.0], [0.0, 1.0]]))] == [0, 1]   # ties
    with pytest.raises(ConfigError, match="top"):
        rank(torch.tensor([1.0]), images[:, :1], top=0)


def test_text_search_equals_the_cosine_order_by_hand(tiny_bundle, folder: Path) -> None:
    ranked = cd.search(tiny_bundle, folder, "a red square")
    paths = [p for p, _ in ranked]
    assert sorted(p.name for p in paths) == sorted(f"{n}.png" for n in COLOURS)   # recursive, README left out
    query = cd.text_classifier(tiny_bundle, ["a red square"], ["{}"])[0].float()
    expected = _by_hand(tiny_bundle, paths, query)
    assert [p.name for p in paths] == [name for name, _ in expected]
    assert [s for _, s in ranked] == pytest.approx([s for _, s in expected], abs=1e-5)
    assert [p for p, _ in cd.search(tiny_bundle, folder, "a red square", top=2)] == paths[:2]


def _sound(path: Path) -> Path:
    t = np.arange(16000) / 16000
    write_wav(path, 0.5 * np.sin(2 * np.pi * 440.0 * t) * np.sin(np.pi * t) ** 2, 16000)
    return path


def test_audio_search_equals_the_cosine_order_by_hand(folder: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    if not (AUDIO_WEIGHTS_DIR / "tiny-vit-t8--synthworld.safetensors").is_file():
        pytest.skip("no shipped audio tower")
    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    wav = _sound(tmp_path / "tone.wav")
    ranked = cd.search(bundle, folder, read_audio(wav))
    query = cd.encode_audio(bundle, read_audio(wav))
    expected = _by_hand(bundle, [p for p, _ in ranked], query)
    assert [p.name for p, _ in ranked] == [name for name, _ in expected]
    assert [s for _, s in ranked] == pytest.approx([s for _, s in expected], abs=1e-5)
    assert main(["search", str(folder), "--audio", str(wav), "--top", "3", "--json", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [row["path"] for row in printed] == [p.relative_to(folder).as_posix() for p, _ in ranked[:3]]
    assert [row["score"] for row in printed] == pytest.approx([s for _, s in ranked[:3]], abs=1e-5)


def test_search_without_images_or_with_an_empty_query_is_refused(tiny_bundle, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no image files"):
        cd.search(tiny_bundle, tmp_path, "a red square")
    with pytest.raises(ConfigError, match="non-empty sentence or a sound"):
        cd.search(tiny_bundle, [tmp_path / "x.png"], "  ")
