"""The synthetic world: the generator (``scenes``, ``shapes``, ``stuff``, ``captions``), its writer in the
real formats (``writers``) and the reader of a written world folder (``folder``, re-exported here because
every format reader asks whether ``--data`` is a world)."""
from .folder import World, WorldSplit, is_world, open_world

__all__ = ["World", "WorldSplit", "is_world", "open_world"]
