"""Figure layout shared by the demo report's pictures."""
from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw

from ..tasks.overlay import palette


def grid_canvas(rows: list[list[Image.Image]], titles: Sequence[str], classes: Sequence[str],
            shown: set[int]) -> Image.Image:
    """Tiles in a grid under their titles, with a colour legend of the ``shown`` classes below (none when empty)."""
    width, height = rows[0][0].size
    legend_rows = (len(shown) + 3) // 4
    canvas = Image.new("RGB", (width * len(titles), 14 + height * len(rows) + 14 * legend_rows + 4), "white")
    draw = ImageDraw.Draw(canvas)
    colours = palette(len(classes))
    column = canvas.width // 4
    for i, cls in enumerate(sorted(shown)):
        left, top = (i % 4) * column + 2, 14 + height * len(rows) + 2 + (i // 4) * 14
        draw.rectangle([left, top, left + 10, top + 10], fill=tuple(int(v) for v in colours[cls]))
        draw.text((left + 14, top - 1), classes[cls], fill="black")
    for col, title in enumerate(titles):
        draw.text((col * width + 2, 1), title, fill="black")
    for r, tiles in enumerate(rows):
        for col, tile in enumerate(tiles):
            canvas.paste(tile, (col * width, 14 + r * height))
    return canvas
