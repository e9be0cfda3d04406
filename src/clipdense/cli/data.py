"""`clipdense data ...`: write the synthetic world in real dataset formats."""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from ..config import build_config
from ..errors import ConfigError
from ..data.world.scenes import SynthConfig
from ..data.world.writers import check_world_folder, total_images, write_world
from .common import AMOUNT, COUNT, PIXELS, SEED, bounded
from .outputs import check_out_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `data synth` to the command line."""
    parser = subparsers.add_parser("data", help="synthetic world and dataset formats")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    synth = sub.add_parser("synth", help="write the synthetic world (images, captions, COCO, semseg, ImageFolder)")
    synth.add_argument("--out", required=True, help="output folder (the WORLD)")
    synth.add_argument("--config", default=None, help="YAML file with SynthConfig keys (flags override it)")
    synth.add_argument("--train", type=AMOUNT, default=None, help="train scenes (default 2000)")
    synth.add_argument("--val", type=AMOUNT, default=None, help="val scenes (default 500)")
    synth.add_argument("--image-size", type=PIXELS, default=None, help="square image side in pixels (default 96)")
    synth.add_argument("--seed", type=SEED, default=None, help="world seed (default 0)")
    synth.add_argument("--shard-size", type=COUNT, default=None, help="samples per WebDataset shard (default 500)")
    synth.add_argument("--classify-train-per-class", type=AMOUNT, default=None,
                       help="single-object train images per thing class (default 8)")
    synth.add_argument("--classify-val-per-class", type=AMOUNT, default=None,
                       help="single-object val images per thing class (default 8)")
    synth.add_argument("--colours", default=None, help="comma-separated colour names")
    synth.add_argument("--shapes", default=None, help="comma-separated shape names")
    synth.add_argument("--max-objects", type=AMOUNT, default=None, help="most things per scene (default 4)")
    synth.add_argument("--workers", type=AMOUNT, default=None, help="encoding processes (default 0: in-process)")
    synth.add_argument("--points", action="store_true",
                       help="also write the 3-D world (primitive meshes and point clouds in ModelNet40's layouts) "
                            "in OUT/points (see clipdense.data.world.points3d)")
    synth.add_argument("--points-per-class", type=COUNT, default=None,
                       help="with --points: train shapes per class (default 24; test gets half)")
    synth.add_argument("--depth", action="store_true",
                       help="also write the depth world in OUT/depth: things on a ground plane before a wall at "
                            "metric depths, NYU-style 16-bit millimetre PNGs beside the images, distance captions "
                            "(read with --data nyu-depth:images=OUT/depth/val/images,depths=OUT/depth/val/depth)")
    synth.add_argument("--depth-scenes", type=COUNT, default=None,
                       help="with --depth: train scenes (default 200; val gets a quarter, at least 1)")
    synth.add_argument("--audio", action="store_true",
                       help="also write the sounding world in OUT/audio: each scene's sound beside its picture "
                            "(triplet CSV + .png/.wav/.txt shards) and single-object sounds in the ESC-50 layout")
    synth.add_argument("--audio-snr", type=bounded(float, -20.0, 60.0, what="a ratio in dB"), default=None,
                       help="with --audio: signal-to-noise ratio of the background under the things (default 20)")
    synth.add_argument("--audio-speech", action="store_true",
                       help="with --audio: also read every caption aloud with eSpeak NG (extra 'speech') into "
                            "OUT/audio/{train,val}-speech.csv triplets")
    synth.add_argument("--audio-per-class", type=AMOUNT, default=None,
                       help="with --audio: single-object sounds per thing class in the ESC-50 layout (default 10)")
    synth.add_argument("--grounding", action="store_true",
                       help="also write grounding data in OUT/grounding: each caption's noun phrases with their "
                            "boxes as modulated-detection COCO (GLIP/MDETR) and in the Flickr30k Entities layout")
    synth.add_argument("--vqa", action="store_true",
                       help="also write VQAv2 questions and annotations in OUT/vqa about each scene's things "
                            "(colour, shape, count, left-of relations; ten answers each)")
    synth.add_argument("--lvis", action="store_true",
                       help="also write the long-tailed world in OUT/lvis: LVIS v1 JSON (rare / common / frequent "
                            "classes by training-image count, federated negative and not-exhaustive labels), read "
                            "with --data OUT/lvis/{train,val}.yaml")
    synth.add_argument("--lvis-scenes", type=bounded(int, 200, 1_000_000, what="a number of scenes"), default=None,
                       help="with --lvis: train scenes (default 600, at least 200 so that frequent classes exist; "
                            "val gets a quarter)")
    synth.add_argument("--video", action="store_true",
                       help="also write the video world in OUT/video: clips of the shapes moving, growing, spinning "
                            "... alone or one after another, as MSR-VTT (videos/all/*.mp4, sentences JSON, 1k-A test "
                            "list, an order-swapped test list) and Kinetics class folders (held-out motions in val)")
    synth.add_argument("--video-clips", type=COUNT, default=None,
                       help="with --video: train clips (default 240; val gets a quarter, the order split an eighth)")
    synth.add_argument("--overwrite", action="store_true",
                       help="replace the world already in --out (its files are removed first)")
    synth.set_defaults(func=run_synth)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_synth(args: argparse.Namespace) -> int:
    """Generate the world with a progress bar; the last line gives counts and images/s."""
    overrides = {key: getattr(args, key) for key in (
        "train", "val", "image_size", "seed", "shard_size", "classify_train_per_class",
        "classify_val_per_class", "colours", "shapes", "max_objects", "workers")}
    overrides["out"] = args.out
    cfg = build_config(SynthConfig, args.config, overrides)
    if args.points_per_class is not None and not args.points:
        raise ConfigError("--points-per-class: only with --points (the 3-D world)")
    if args.depth_scenes is not None and not args.depth:
        raise ConfigError("--depth-scenes: only with --depth (the depth world)")
    if (args.audio_snr is not None or args.audio_per_class is not None or args.audio_speech) and not args.audio:
        raise ConfigError("--audio-snr / --audio-per-class / --audio-speech: only with --audio (the sounding world)")
    if args.lvis_scenes is not None and not args.lvis:
        raise ConfigError("--lvis-scenes: only with --lvis (the long-tailed world)")
    if args.video_clips is not None and not args.video:
        raise ConfigError("--video-clips: only with --video (the video world)")
    check_out_folder(cfg.out, "--out", "a folder for the world")   # refused before the progress bar is drawn
    check_world_folder(Path(cfg.out), args.overwrite)
    with tqdm(total=total_images(cfg), unit="img", desc="synth", dynamic_ncols=True) as bar:
        summary = write_world(cfg, progress=bar.update, overwrite=args.overwrite)
    if args.points:
        _synth_points(Path(cfg.out) / "points", cfg.seed, args.points_per_class)
    if args.depth:
        _synth_depth(Path(cfg.out) / "depth", cfg.seed, cfg.image_size, args.depth_scenes)
    if args.video:
        _synth_video(Path(cfg.out) / "video", cfg.seed, args.video_clips)
    if args.audio:
        _synth_audio(Path(cfg.out), args.audio_snr, args.audio_per_class, args.audio_speech)
    if args.lvis:
        _synth_lvis(Path(cfg.out), cfg, args.lvis_scenes)
    if args.grounding:
        _synth_grounding(Path(cfg.out), cfg.train + cfg.val)
    if args.vqa:
        _synth_vqa(Path(cfg.out), cfg.train + cfg.val)
    print(f"wrote {summary.images['train']} train + {summary.images['val']} val scenes "
          f"({summary.objects['train'] + summary.objects['val']} objects), "
          f"{sum(summary.classify_images.values())} single-object images to {Path(cfg.out)} "
          f"in {summary.seconds:.1f} s ({summary.images_per_second:.0f} images/s)")
    return 0


def _synth_grounding(world: Path, scenes: int) -> None:
    """The grounding layouts beside the world's images (its own progress bar and summary line)."""
    from ..data.world.grounding import write_grounding

    with tqdm(total=scenes, unit="scene", desc="grounding", dynamic_ncols=True) as bar:
        counts = write_grounding(world, progress=bar.update)
    print(f"wrote {counts['train']} train + {counts['val']} val grounded phrases to {world / 'grounding'} "
          "(modulated COCO mdetr_*.json, Flickr30k Entities flickr30k_*/)")


def _synth_vqa(world: Path, scenes: int) -> None:
    """The VQAv2 files beside the world's images (their own progress bar and summary line)."""
    from ..data.world.vqa import write_vqa_world

    with tqdm(total=scenes, unit="scene", desc="vqa", dynamic_ncols=True) as bar:
        counts = write_vqa_world(world, progress=bar.update)
    print(f"wrote {counts['train']} train + {counts['val']} val VQAv2 questions to {world / 'vqa'}")


def _synth_audio(world: Path, snr: float | None, per_class: int | None, speech: bool = False) -> None:
    """The sounding world beside the image world (its own progress bar and summary line)."""
    from ..data.world.sound_writer import total_clips, write_sounds
    from ..data.world.sounds import SoundConfig

    sound = SoundConfig(speech=speech, **{k: v for k, v in (("snr_db", snr), ("single_per_class", per_class))
                                          if v is not None})
    cfg = build_config(SynthConfig, str(world / "config.yaml"), {})
    with tqdm(total=total_clips(cfg, sound), unit="clip", desc="audio", dynamic_ncols=True) as bar:
        counts = write_sounds(world, sound, progress=bar.update)
    print(f"wrote {counts['train']} train + {counts['val']} val scene sounds and {counts['esc50']} single-object "
          f"sounds (ESC-50 layout) to {world / 'audio'} ({sound.sample_rate} Hz, {sound.snr_db:g} dB SNR)")


def _synth_lvis(world: Path, cfg: SynthConfig, scenes: int | None) -> None:
    """The long-tailed world beside the image world (LVIS v1 JSON; its own progress bar and summary line)."""
    from ..data.world.lvis import LvisWorldConfig, scaled_config, write_lvis_world

    lcfg = LvisWorldConfig() if scenes is None else scaled_config(scenes)
    with tqdm(total=lcfg.train + lcfg.val, unit="img", desc="synth lvis", dynamic_ncols=True) as bar:
        summary = write_lvis_world(world / "lvis", cfg, lcfg, progress=bar.update)
    buckets = summary["buckets"]
    print(f"wrote {summary['images']['train']} train + {summary['images']['val']} val long-tailed scenes "
          f"({buckets['r']} rare, {buckets['c']} common, {buckets['f']} frequent classes; LVIS v1 JSON) to "
          f"{world / 'lvis'}")


def _synth_video(out: Path, seed: int, clips: int | None) -> None:
    """The video world beside the image world (its own progress bar and summary line)."""
    from ..data.world.video import VideoWorldConfig
    from ..data.world.video_writer import total_clips, write_video_world

    config = VideoWorldConfig(seed=seed)
    if clips is not None:
        config.train, config.val, config.order_pairs = clips, max(1, clips // 4), max(1, clips // 16)
    with tqdm(total=total_clips(config), unit="clip", desc="synth video", dynamic_ncols=True) as bar:
        counts = write_video_world(out, config, progress=bar.update)
    print(f"wrote {counts['train']} train + {counts['val']} val + {counts['order']} order-split clips (MSR-VTT "
          f"layout) and {counts['kinetics-train']} + {counts['kinetics-val']} action clips (Kinetics layout) "
          f"to {out}")


def _synth_depth(out: Path, seed: int, image_size: int, scenes: int | None) -> None:
    """The depth world beside the image world, at the world's image size and seed (its own progress bar)."""
    from ..data.world.depth import DepthWorldConfig, write_depth_world

    config = DepthWorldConfig(image_size=image_size, seed=seed)
    if scenes is not None:
        config.train, config.val = scenes, max(1, scenes // 4)
    with tqdm(total=config.train + config.val, unit="scene", desc="synth depth", dynamic_ncols=True) as bar:
        counts = write_depth_world(out, config, progress=bar.update)
    print(f"wrote {counts['train']} train + {counts['val']} val depth scenes ({image_size} px, 16-bit mm depth "
          f"PNGs) to {out}")


def _synth_points(out: Path, seed: int, per_class: int | None) -> None:
    """The 3-D world beside the image world (its own progress bar and summary line)."""
    from ..data.world.points3d import write_points_world
    from ..data.world.shapes3d import Shapes3DConfig

    config = Shapes3DConfig(seed=seed)
    if per_class is not None:
        config.train_per_class, config.test_per_class = per_class, max(1, per_class // 2)
    total = (config.train_per_class + config.test_per_class) * len(config.classes)
    with tqdm(total=total, unit="shape", desc="synth 3-D", dynamic_ncols=True) as bar:
        counts = write_points_world(out, config, progress=bar.update)
    print(f"wrote {counts['train']} train + {counts['test']} test shapes ({len(config.classes)} classes) to {out} "
          "(ModelNet40 meshes and modelnet40_normal_resampled points)")
