"""Contact sheets: variants of one image, each captioned with the ops that made it."""

from __future__ import annotations

import math
import os
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from . import images, pipeline
from .errors import SourceError, UsageError
from .execute import partner_loader, readable_partners, rng_for
from .ops.base import Partners
from .plan import variant_seed
from .recipe import Recipe, RecipeSource, load_recipe

CAPTION_LINES = 4


def caption(applied: list[dict[str, Any]]) -> list[str]:
    """One short line per applied op: its name and its first numeric parameters."""
    if not applied:
        return ["(no ops applied)"]
    lines = []
    for entry in applied:
        numbers = [
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in entry.items()
            if k not in ("op", "fill", "seed")
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
        ]
        lines.append(" ".join([entry["op"], *numbers[:2]]))
    if len(lines) > CAPTION_LINES:
        lines = [*lines[: CAPTION_LINES - 1], f"+{len(lines) - CAPTION_LINES + 1} more ops"]
    return lines


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """`text`, cut with an ellipsis to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _siblings(path: str, recipe: Recipe) -> Partners:
    """The images beside `path` stand in for its class when previewing mixing ops."""
    folder = os.path.dirname(os.path.abspath(path))
    names = sorted(
        e.name
        for e in os.scandir(folder)
        if e.is_file() and os.path.splitext(e.name)[1].lower() in recipe.extensions
    )
    return Partners(tuple(names), os.path.basename(path), partner_loader(folder, recipe, False))


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def preview(
    recipe: RecipeSource,
    image_path: str | os.PathLike,
    *,
    n: int = 16,
    tile: int = 256,
    seed: int | None = None,
) -> Image.Image:
    """A grid of `n` variants of one image, each captioned with its applied ops."""
    if n < 1 or tile < 32:
        raise UsageError("preview needs n >= 1 and tile >= 32")
    rec = load_recipe(recipe).replace(seed=seed)
    path = os.fspath(image_path)
    try:
        data = images.read_source(path, rec.max_pixels)
        image = images.decode(
            data, max_pixels=rec.max_pixels, keep_alpha=False, background=rec.background
        )
    except SourceError as exc:
        raise UsageError(f"{path}: {exc}") from None
    font_size = max(10, tile // 20)
    font = _font(font_size)
    line_h = font_size + 3
    cap_h = CAPTION_LINES * line_h + 6
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    sheet = Image.new("RGB", (cols * tile, rows * (tile + cap_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    # Seeded like `expand` seeds IN/<class>/<name>: the sheet shows the ops and parameters a
    # run draws (from a full decode; a run may decode a large JPEG at reduced scale).
    name = "/".join(os.path.abspath(path).split(os.sep)[-2:])
    partners = _siblings(path, rec)
    for i in range(n):
        rng = rng_for(variant_seed(rec.seed, name, i + 1))
        applied = readable_partners(
            pipeline.sample(rec.pipeline, rng, image.size, partners), partners
        )
        out = pipeline.run(image, applied, partners, rec.resampler).convert("RGB")
        out.thumbnail((tile - 8, tile - 8))
        x, y = (i % cols) * tile, (i // cols) * (tile + cap_h)
        sheet.paste(out, (x + (tile - out.width) // 2, y + (tile - out.height) // 2))
        for k, line in enumerate(caption(applied)):
            text = _fit(draw, line, font, tile - 8)
            draw.text((x + 4, y + tile + 2 + k * line_h), text, fill=(0, 0, 0), font=font)
    return sheet
