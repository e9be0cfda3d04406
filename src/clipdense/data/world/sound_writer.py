"""Write the sounding world beside a written world's images (``clipdense data synth --audio``)::

    WORLD/audio/sounds.yaml                       the SoundConfig (regenerates every clip byte for byte)
    WORLD/audio/scenes/{train,val}/NNNNNN.wav     each scene's clip (16-bit PCM)
    WORLD/audio/{train,val}.csv                   image-sound-text triplets: filepath, audiopath, title
    WORLD/audio/shards/{train,val}-000000.tar     the same as WebDataset shards: .png + .wav + .txt
    WORLD/audio/esc50/{audio,meta/esc50.csv}      single-object sounds in the ESC-50 layout (5 folds), one class per thing
    WORLD/audio/speech/{train,val}/NNNNNN.wav     with ``speech``: each caption read aloud (eSpeak NG)
    WORLD/audio/{train,val}-speech.csv            with ``speech``: image-speech-text triplets (speech -> image retrieval)

Clips are regenerated from the world's own config.yaml, so a scene's sound always matches its picture.
"""
from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Callable

import numpy as np

from ...config import build_config, save_config
from ...errors import ConfigError
from ..audio import wav_bytes
from ..formats.audio import write_esc50, write_triplets_csv
from .scenes import SynthConfig, Vocabulary, _make_thing, generate_scene, make_vocabulary
from .sounds import SoundConfig, event_sound, scene_sound
from .writers import SPLITS

AUDIO_DIR = "audio"
ESC50_FOLDS = 5


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def scene_clip(cfg: SynthConfig, vocab: Vocabulary, sound: SoundConfig, split: str, index: int) -> np.ndarray:
    """The clip of scene ``index`` of ``split`` (its own generator, independent of the picture's)."""
    scene = generate_scene(cfg, vocab, split, index)
    rng = np.random.default_rng([cfg.seed, 1000 + SPLITS.index(split), index])
    return scene_sound(scene.things, scene.stuff, cfg.image_size, sound, rng)


def single_clip(cfg: SynthConfig, vocab: Vocabulary, sound: SoundConfig, class_name: str, index: int) -> np.ndarray:
    """One sound of thing ``class_name`` alone (mid-to-large, a random onset, quiet background at ``snr_db``)."""
    rng = np.random.default_rng([cfg.seed, 2000, vocab.things.index(class_name), index])
    colour, shape = vocab.combos.get(class_name, (None, class_name))
    if shape == "house":
        colour = cfg.colours[int(rng.integers(len(cfg.colours)))]
    radius = 0.5 * cfg.image_size * rng.uniform(0.3, 0.8)
    thing = _make_thing(rng, cfg, class_name, shape, colour, radius, (cfg.image_size / 2,) * 2)
    return scene_sound([thing], [cfg.stuff[int(rng.integers(len(cfg.stuff)))]], cfg.image_size, sound, rng)


def _write_split(world: Path, cfg: SynthConfig, vocab: Vocabulary, sound: SoundConfig, split: str,
                 progress: Callable[[int], None]) -> int:
    root = world / AUDIO_DIR
    folder = root / "scenes" / split
    folder.mkdir(parents=True, exist_ok=True)
    (root / "shards").mkdir(exist_ok=True)
    count = cfg.train if split == "train" else cfg.val
    rows = []
    with tarfile.open(root / "shards" / f"{split}-000000.tar", "w") as tar:
        for index in range(count):
            key = f"{index:06d}"
            data = wav_bytes(scene_clip(cfg, vocab, sound, split, index), sound.sample_rate)
            (folder / f"{key}.wav").write_bytes(data)
            image = world / split / "images" / f"{key}.png"
            caption = generate_scene(cfg, vocab, split, index).caption
            _tar_add(tar, f"{key}.png", image.read_bytes())
            _tar_add(tar, f"{key}.wav", data)
            _tar_add(tar, f"{key}.txt", caption.encode())
            rows.append((f"../{split}/images/{key}.png", f"scenes/{split}/{key}.wav", caption))
            progress(1)
    write_triplets_csv(root / f"{split}.csv", rows)
    if sound.speech:
        _write_speech(root, split, rows, sound.sample_rate)
    return count


def _write_speech(root: Path, split: str, rows: list[tuple[str, str, str]], sample_rate: int) -> None:
    from .speech import speak
    folder = root / "speech" / split
    folder.mkdir(parents=True, exist_ok=True)
    spoken = []
    for image, sound, caption in rows:
        name = Path(sound).name
        (folder / name).write_bytes(wav_bytes(speak(caption, sample_rate), sample_rate))
        spoken.append((image, f"speech/{split}/{name}", caption))
    write_triplets_csv(root / f"{split}-speech.csv", spoken)


def write_sounds(world: str | Path, sound: SoundConfig | None = None,
                 progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Write the sounds of the world in ``world`` (see the module docstring); returns clip counts."""
    world, sound = Path(world), sound or SoundConfig()
    sound.validate()
    if not (world / "config.yaml").is_file():
        raise ConfigError(f"{world}: no world here (config.yaml missing); write the world first")
    cfg = build_config(SynthConfig, str(world / "config.yaml"), {})
    vocab, step = make_vocabulary(cfg), progress or (lambda n: None)
    (world / AUDIO_DIR).mkdir(exist_ok=True)
    save_config(sound, world / AUDIO_DIR / "sounds.yaml")
    counts = {split: _write_split(world, cfg, vocab, sound, split, step) for split in SPLITS}

    def singles():
        for target, name in enumerate(vocab.things):
            for j in range(sound.single_per_class):
                step(1)
                yield (f"{j % ESC50_FOLDS + 1}-{target * 1000 + j}-A-{target}.wav", j % ESC50_FOLDS + 1, target,
                       single_clip(cfg, vocab, sound, name, j))
    counts["esc50"] = write_esc50(world / AUDIO_DIR / "esc50", singles(), vocab.things, sound.sample_rate)
    return counts


def total_clips(cfg: SynthConfig, sound: SoundConfig) -> int:
    """How many clips write_sounds writes (for progress bars)."""
    return cfg.train + cfg.val + len(make_vocabulary(cfg).things) * sound.single_per_class
