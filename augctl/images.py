"""Image I/O: safe decoding (EXIF, modes, bomb guard), encoding, and atomic writes."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .errors import SourceError
from .ops.base import fill_for

# Pillow format name, file extension and whether the format stores alpha, by recipe format.
FORMATS = {
    "jpeg": ("JPEG", ".jpg", False),
    "png": ("PNG", ".png", True),
    "webp": ("WEBP", ".webp", True),
}
_SAME = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".jfif": "jpeg",
    ".png": "png",
    ".webp": "webp",
    ".bmp": "bmp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".gif": "gif",
}
_EXTRA = {"bmp": ("BMP", None, False), "tiff": ("TIFF", None, True), "gif": ("GIF", None, False)}
TEMP_SUFFIX = ".augctl-tmp"
_ORIENTATION_TAG = 0x0112
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_PID = [os.getpid()]  # temporary names carry the pid; refreshed in forked children
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def output_format(recipe_format: str, source_ext: str) -> tuple[str, str]:
    """(recipe format, file extension) of the outputs of a source with `source_ext`."""
    if recipe_format != "same":
        return recipe_format, FORMATS[recipe_format][1]
    ext = source_ext.lower()
    fmt = _SAME.get(ext)
    return (fmt, ext) if fmt else ("png", ".png")


def keeps_alpha(fmt: str) -> bool:
    """Whether files of this format can store transparency."""
    return (FORMATS.get(fmt) or _EXTRA[fmt])[2]


def read_source(path: str, max_pixels: int | None = None) -> bytes:
    """The bytes of a source file, after checking from its header alone that it is an
    image of at most `max_pixels` (so a huge non-image is never read into memory)."""
    try:
        # O_NONBLOCK: a file swapped for a FIFO after the walk must not block the worker.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise SourceError(f"cannot read file: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # before fdopen, which refuses a folder
            raise SourceError("not a regular file")
        f = os.fdopen(fd, "rb")
    except BaseException as exc:
        os.close(fd)
        if isinstance(exc, OSError):
            raise SourceError(f"cannot read file: {exc.strerror or exc}") from None
        raise
    with f:
        if st.st_size == 0:
            raise SourceError("empty file (0 bytes)")
        if max_pixels is not None:
            head = f.read(64)
            f.seek(0)
            try:
                with _pixel_limit_lifted():
                    _check_size(Image.open(f), max_pixels)
            except SourceError:
                raise
            except Exception as exc:  # Pillow plugins raise OSError, ValueError, SyntaxError...
                raise SourceError(_reason(exc, head)) from None
            f.seek(0)
        try:
            return f.read()
        except OSError as exc:
            raise SourceError(f"cannot read file: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _pixel_limit_lifted() -> Iterator[None]:
    """Let input.max_pixels, not Pillow's fixed global limit, decide what is too large."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _check_size(image: Image.Image, max_pixels: int) -> None:
    w, h = image.size
    if w * h > max_pixels:
        raise SourceError(
            f"image is {w}x{h} = {w * h:,} pixels, more than input.max_pixels ({max_pixels:,})"
        )


def _reason(exc: Exception, head: bytes) -> str:
    """Why Pillow could not open or decode a file, in words a person can act on."""
    if isinstance(exc, Image.UnidentifiedImageError):
        kind = _signature(head)
        if kind:
            return f"corrupt or truncated image data (a {kind} header, but undecodable)"
        return "not an image (Pillow cannot identify its format)"
    return f"corrupt or truncated image data: {exc}"


@dataclass(frozen=True)
class Header:
    """What a source's header says before any pixel is decoded."""

    size: tuple[int, int]  # upright: EXIF orientation applied
    stored: tuple[int, int]  # as the pixels are stored in the file
    orientation: int  # EXIF orientation, 1-8 (1 when absent or unreadable)
    draftable: bool  # a JPEG that libjpeg can decode at 1/2, 1/4 or 1/8 scale


# EXIF orientation -> (transpose that makes the image upright, axes swapped, x flipped,
# y flipped); the flips are of the upright axes relative to the stored ones.
_ORIENTATIONS = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT, False, True, False),
    3: (Image.Transpose.ROTATE_180, False, True, True),
    4: (Image.Transpose.FLIP_TOP_BOTTOM, False, False, True),
    5: (Image.Transpose.TRANSPOSE, True, False, False),
    6: (Image.Transpose.ROTATE_270, True, True, False),
    7: (Image.Transpose.TRANSVERSE, True, True, True),
    8: (Image.Transpose.ROTATE_90, True, False, True),
}


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation still to apply to an opened image (1: none)."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block must not cost the image; keep it as stored
        return 1
    if value not in _ORIENTATIONS or _orients_itself(image.format or ""):
        return 1
    return value


@functools.cache
def _orients_itself(pil_format: str) -> bool:
    """Whether Pillow's plugin for a format applies EXIF orientation itself (its TIFF
    plugin does in recent versions), found out by trying, not from version numbers."""
    save_as = "JPEG" if pil_format == "MPO" else pil_format
    if save_as not in ("JPEG", "PNG", "WEBP", "TIFF"):
        return False
    exif = Image.Exif()
    exif[_ORIENTATION_TAG] = 6
    buf = io.BytesIO()
    try:
        Image.new("L", (2, 1)).save(buf, save_as, exif=exif.tobytes())
        with Image.open(buf) as image:
            image.load()  # whenever this Pillow swaps the size, it has by now
            return image.size == (1, 2)
    except Exception:  # a format this Pillow can't write: it can't have changed either
        return False


def read_header(data: bytes, *, max_pixels: int) -> Header:
    """Read a source's header: upright size, orientation, whether it can be draft-decoded."""
    try:
        with _pixel_limit_lifted():
            image = Image.open(io.BytesIO(data))
            _check_size(image, max_pixels)
    except SourceError:
        raise
    except Exception as exc:  # Pillow plugins raise OSError, ValueError, SyntaxError, ...
        raise SourceError(_reason(exc, data[:64])) from None
    return _header(image)


def _header(image: Image.Image) -> Header:
    orientation = _orientation(image)
    w, h = image.size
    swapped = orientation in _ORIENTATIONS and _ORIENTATIONS[orientation][1]
    draftable = image.format == "JPEG" and len(image.tile) == 1 and image.mode in ("L", "RGB")
    return Header((h, w) if swapped else (w, h), (w, h), orientation, draftable)


def draft_origin(header: Header, scale: int) -> tuple[int, int]:
    """Where the corner of the upright image decoded at 1/`scale` sits in full-size pixels.

    The reduced image covers whole blocks of `scale` pixels, so along an axis that EXIF
    orientation flips, its origin lies up to `scale - 1` pixels before the full image's.
    """
    if header.orientation not in _ORIENTATIONS:
        return 0, 0
    _, swapped, flip_x, flip_y = _ORIENTATIONS[header.orientation]
    w, h = header.stored
    nx, ny = (h, w) if swapped else (w, h)
    return (
        nx - scale * -(-nx // scale) if flip_x else 0,
        ny - scale * -(-ny // scale) if flip_y else 0,
    )


def decode(
    data: bytes,
    *,
    max_pixels: int,
    keep_alpha: bool,
    background: Any = 255,
    scale: int = 1,
    header: Header | None = None,
) -> Image.Image:
    """Decode an image: first frame, EXIF orientation applied, mode L/LA/RGB/RGBA.

    `scale` > 1 decodes a JPEG at that reduced DCT scale (1/2, 1/4 or 1/8 of each side).
    `header`, from `read_header(data)`, saves reading the EXIF block again.
    """
    try:
        with _pixel_limit_lifted():
            image = Image.open(io.BytesIO(data))
            _check_size(image, max_pixels)
            orientation = header.orientation if header is not None else _orientation(image)
            if scale > 1:
                w, h = image.size
                image.draft(None, (w // scale, h // scale))
                if image.size != (-(-w // scale), -(-h // scale)):
                    raise SourceError(f"cannot decode this image at 1/{scale} scale")
            # A 16-bit PNG's colour key is 16-bit too, while Pillow keeps 8 bits of each
            # sample: matched against those it would clear the wrong pixels. Not applied.
            if image.format == "PNG" and any(";16" in str(t[3]) for t in image.tile):
                image.info.pop("transparency", None)
            image.load()
    except SourceError:
        raise
    except Exception as exc:  # Pillow plugins raise OSError, ValueError, SyntaxError, ...
        raise SourceError(_reason(exc, data[:64])) from None
    if orientation in _ORIENTATIONS:
        image = image.transpose(_ORIENTATIONS[orientation][0])
    image = _normalize_mode(image)
    if image.mode in ("LA", "RGBA") and not keep_alpha:
        image = flatten(image, background)
    # Only pixels go on: what Pillow keeps in `info` (a TIFF's group4 compression, the sRGB
    # profile with today's date that a LAB conversion attaches) would reach the outputs, and
    # so would a TIFF's header, which Pillow's TIFF writer copies XMP, IPTC and Photoshop data
    # from when it is given the opened file's own image (an original left as decoded).
    if hasattr(image, "tag_v2"):
        image = image._new(image.im)  # the same pixels, not copied, in a plain image
    image.info = {}
    return image


def probe(path: str, max_pixels: int) -> tuple[int, int]:
    """The upright (EXIF-oriented) size of an image, read from its header without decoding;
    the same checks and reasons as a run, without reading the whole file."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise SourceError(f"cannot read file: {exc.strerror or exc}") from None
    if not head:
        raise SourceError("empty file (0 bytes)")
    try:
        with _pixel_limit_lifted(), Image.open(path) as image:
            _check_size(image, max_pixels)
            return _header(image).size
    except SourceError:
        raise
    except Exception as exc:  # Pillow plugins raise OSError, ValueError, SyntaxError, ...
        raise SourceError(_reason(exc, head)) from None


_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _signature(data: bytes) -> str | None:
    """The image format a file's first bytes claim, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)


def _normalize_mode(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to L, LA, RGB or RGBA without clipping or hidden colours."""
    mode = image.mode
    if mode in ("L", "RGB") and "transparency" in image.info:
        return image.convert(mode + "A")  # a colour key (PNG's tRNS): that colour is clear
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        has_alpha = "transparency" in image.info or image.palette.mode == "RGBA"
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode == "PA":
        return image.convert("RGBA")
    if mode == "La":
        return image.convert("LA")
    if mode == "RGBa":
        return image.convert("RGBA")
    if mode.startswith("I") or mode == "F":
        return _to_8bit(image)
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


def _to_8bit(image: Image.Image) -> Image.Image:
    """Rescale a 16/32-bit integer or float image to 8-bit grayscale (never clip).

    Only finite values decide the scale; NaN becomes 0, infinities the ends of the range.
    """
    arr = np.asarray(image).astype(np.float64)
    finite = arr[np.isfinite(arr)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        if image.mode == "F" and lo >= 0 and hi <= 1:
            scaled = arr * 255.0
        elif image.mode != "F" and lo >= 0 and hi <= 65535:
            scaled = arr / 257.0  # the full 16-bit range onto 0-255
        else:
            scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.where(arr > lo, 255.0, 0.0)
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def flatten(image: Image.Image, background: Any = 255) -> Image.Image:
    """Composite an LA/RGBA image over a solid background, dropping alpha."""
    mode = image.mode[:-1]
    out = Image.new(mode, image.size, fill_for(mode, background))
    out.paste(image.convert(mode), mask=image.getchannel("A"))
    return out


@dataclass(frozen=True)
class Metadata:
    """What a source's header says beyond its pixels: profiles, EXIF, and whether decoding
    leaves the pixels exactly as stored (one frame, upright, no mode conversion)."""

    icc: bytes | None = None
    exif: bytes | None = None  # what `exif: keep` keeps (`_EXIF_TAGS`)
    has_exif: bool = False  # whether the source has any EXIF at all (a copy would keep it)
    pristine: bool = False
    format: str | None = None  # as Pillow names it, lowercased: "jpeg", "png", ...


_COLOUR_SPACE_CHANGES = (
    "CMYK",
    "LAB",
    "HSV",
)  # their ICC profile no longer fits after RGB conversion


# What `exif: keep` keeps of a source's first EXIF block: the tags EXIF puts there to say
# what the picture is and how it was made (description, camera, software, date, artist,
# copyright, resolution, white point and primaries, Windows' title and keywords) and its
# EXIF and GPS blocks. A TIFF's "EXIF" is its whole first header: its other tags describe
# the source's own pixels (size, strips, compression: a TIFF writer given them made a
# corrupt output) or carry data of their own (XMP with its orientation, IPTC, Photoshop's
# resources and a layered file's layers), never an output's.
_EXIF_TAGS = frozenset(
    {270, 271, 272, 274, 282, 283, 296, 305, 306, 315, 316, 318, 319, 18246, 18249, 33432}
    | {34665, 34853, 40091, 40092, 40093, 40094, 40095}
)
# In the EXIF block, the source's width and height.
_EXIF_SIZE_TAGS = (40962, 40963)


def read_metadata(data: bytes, keep_alpha: bool) -> Metadata:
    """ICC profile, EXIF (orientation reset to upright) and pristine-ness, from the header."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            icc = image.info.get("icc_profile") or None
            if image.mode in _COLOUR_SPACE_CHANGES:
                icc = None
            exif = image.getexif()
            orientation = exif.get(0x0112, 1)
            pristine = (
                orientation == 1
                and getattr(image, "n_frames", 1) == 1
                and (image.mode in ("L", "RGB") or (keep_alpha and image.mode in ("LA", "RGBA")))
            )
            if 0x0112 in exif:
                exif[0x0112] = 1  # the pixels are made upright; never rotate them twice
            has_exif = len(exif) > 0
            for tag in set(exif) - _EXIF_TAGS:
                del exif[tag]
            if 0x8769 in exif:
                block = exif.get_ifd(0x8769)  # written back by tobytes()
                for tag in _EXIF_SIZE_TAGS:
                    block.pop(tag, None)
            return Metadata(
                icc=icc,
                exif=exif.tobytes() if len(exif) else None,
                has_exif=has_exif,
                pristine=pristine,
                format=(image.format or "").lower() or None,
            )
    except Exception:  # metadata is a nicety; decode() reports what is really wrong
        return Metadata()


def encode(
    image: Image.Image,
    fmt: str,
    quality: int = 90,
    *,
    compress_level: int = 6,
    lossless: bool = False,
    subsampling: str = "4:2:0",
    icc: bytes | None = None,
    exif: bytes | None = None,
) -> bytes:
    """Encode an image to bytes in a recipe format; flattens alpha the format can't hold."""
    pil_format = (FORMATS.get(fmt) or _EXTRA[fmt])[0]
    if image.mode in ("LA", "RGBA") and not keeps_alpha(fmt):
        image = flatten(image)
    extra: dict[str, Any] = {"icc_profile": None}  # never one from image.info
    if icc and fmt in ("jpeg", "png", "webp", "tiff"):
        extra["icc_profile"] = icc
    if exif and fmt in ("jpeg", "png", "webp", "tiff"):
        extra["exif"] = exif
    buf = io.BytesIO()
    if fmt == "jpeg":
        image.save(buf, format=pil_format, quality=quality, subsampling=subsampling, **extra)
    elif fmt == "webp":
        image.save(buf, format=pil_format, quality=quality, lossless=lossless, method=4, **extra)
    elif fmt == "png":
        image.save(buf, format=pil_format, compress_level=compress_level, **extra)
    else:
        image.save(buf, format=pil_format, **extra)
    return buf.getvalue()


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` to a temporary name in the same folder, then rename it into place."""
    head, name = os.path.split(path)
    tmp = f"{head}/.{name}.{_PID[0]}{TEMP_SUFFIX}"
    try:
        # os-level calls: open, write, close and rename are the only system calls per file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
