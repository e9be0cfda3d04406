"""clipdense.data: the typed Sample, readers for real formats and the synthetic world, geometric transforms."""
from .formats.coco import CocoPanopticRegions, CocoRegions
from .formats.folders import ImageFolderDataset, SemSegFolder, read_classes
from .formats.imagetext import ImageTextDataset, expand_shards, read_csv
from .images import decode_image, open_image
from .readers import READERS, DataInfo, open_data, open_reader, provided_fields, resolve_reader
from .sample import FIELDS, Sample
from .skips import SkipCounter
from .spec import DataSpec, parse_data
from .streams import IndexedSource
from .world.folder import World, WorldSplit, open_world
from .world.scenes import SynthConfig, Vocabulary, generate_scene, generate_single, make_vocabulary
from .world.writers import IGNORE_INDEX, write_world

__all__ = [
    "CocoPanopticRegions", "CocoRegions", "DataInfo", "DataSpec", "FIELDS", "IGNORE_INDEX", "ImageFolderDataset",
    "ImageTextDataset", "IndexedSource", "READERS", "Sample", "SemSegFolder", "SkipCounter", "SynthConfig",
    "Vocabulary", "World", "WorldSplit", "decode_image", "expand_shards", "generate_scene", "generate_single",
    "make_vocabulary", "open_data", "open_image", "open_reader", "open_world", "parse_data", "provided_fields", "read_classes",
    "read_csv", "resolve_reader", "write_world",
]
