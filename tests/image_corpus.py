"""A seeded corpus of hostile and unusual image files, made by the tests themselves.

`write(root, seed)` fills `root` with well-formed images of every kind the
image contract takes or refuses, truncations at many offsets, random byte
mutations of JPEG, PNG, GIF and BMP headers, every BMP variant Pillow writes
and the ones TensorFlow misreads, animations, formats TensorFlow does not
read, and entries that are not regular files. It returns what each entry is,
so tests can hold every outcome to what was made.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib
from pathlib import Path
from typing import Dict, Optional

import numpy as np
from PIL import Image, features as pil_features

SIZE = (40, 32)  # width, height: above ingest.min_side, and not square
TRUNCATIONS_PER_FORMAT = 12
MUTATIONS_PER_FORMAT = 75
HEADER_BYTES = 600  # mutations hit the headers: markers, tables, palettes, chunk headers


@dataclasses.dataclass(frozen=True)
class Entry:
    kind: str  # "image" (taken), "refused", "other" (not a regular file) or "fuzz" (either outcome)
    # For "refused" and "other": a fragment of the reason the file must be set aside with.
    reason: str = ""
    # For "image": the pixels a viewer sees, uint8 [h, w, 3], and whether they are exact (lossless).
    pixels: Optional[np.ndarray] = None
    exact: bool = True


def picture(rng: np.random.Generator, size=SIZE) -> Image.Image:
    """Smooth colour waves plus a little noise: structure at every scale, like a photograph."""
    y, x = np.mgrid[0:size[1], 0:size[0]] / max(size)
    channels = [np.sin(rng.uniform(2, 9) * x + rng.uniform(2, 9) * y + rng.uniform(0, 6)) for _ in range(3)]
    pixels = np.stack(channels, axis=-1) * 100 + 128 + rng.normal(0, 6, (size[1], size[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def rgb(data: bytes) -> np.ndarray:
    """The first frame as a viewer shows it, by Pillow."""
    image = Image.open(io.BytesIO(data))
    if image.mode == "I;16":
        return np.repeat((np.asarray(image, np.float64) / 257).round().astype(np.uint8)[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"))


def bmp(pixels: np.ndarray, header_size: int = 40, bits: int = 24, compression: int = 0, palette: bytes = b"",
        rows: Optional[bytes] = None, masks: bytes = b"", top_down: bool = False) -> bytes:
    """A BMP laid out by hand, for the variants Pillow does not write."""
    height, width = pixels.shape[:2]
    if rows is None:
        order = range(height) if top_down else range(height - 1, -1, -1)
        row_bytes = [pixels[y, :, ::-1].tobytes() if bits == 24 else
                     np.concatenate([pixels[y, :, ::-1], np.full((width, 1), 255, np.uint8)], 1).tobytes()
                     for y in order]
        rows = b"".join(r + b"\0" * (-len(r) % 4) for r in row_bytes)
    if header_size == 12:
        info = struct.pack("<IHHHH", 12, width, height, 1, bits)
    else:
        info = struct.pack("<IiiHHIIiiII", header_size, width, -height if top_down else height, 1, bits,
                           compression, len(rows), 2835, 2835, len(palette) // 4, 0)
        info += masks.ljust(header_size - 40, b"\0") if header_size > 40 else masks
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + info + palette + rows


def indexed_rows(indices: np.ndarray) -> bytes:
    rows = [indices[y].tobytes() for y in range(indices.shape[0] - 1, -1, -1)]
    return b"".join(r + b"\0" * (-len(r) % 4) for r in rows)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header (valid CRC) claims a size it does not hold: a decompression bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def _images(rng: np.random.Generator) -> Dict[str, bytes]:
    """Well-formed files the contract takes, by name."""
    base, other = picture(rng), picture(rng)
    frames = [base.convert("P", palette=Image.ADAPTIVE), other.convert("P", palette=Image.ADAPTIVE)]
    made = {
        "jpeg_rgb.jpg": encode(base, "JPEG", quality=90),
        "jpeg_gray.jpg": encode(base.convert("L"), "JPEG"),
        "jpeg_cmyk.jpg": encode(base.convert("CMYK"), "JPEG", quality=95),
        "jpeg_progressive.jpg": encode(base, "JPEG", progressive=True),
        "camera.mpo": encode(base, "MPO", save_all=True, append_images=[other]),
        "png_rgb.png": encode(base, "PNG"),
        "png_rgba.png": encode(base.convert("RGBA"), "PNG"),
        "png_gray_alpha.png": encode(base.convert("LA"), "PNG"),
        "png_palette.png": encode(frames[0], "PNG"),
        "png_1bit.png": encode(base.convert("1"), "PNG"),
        "png_16bit.png": encode(Image.fromarray((np.asarray(base.convert("L"), np.uint16) * 257)), "PNG"),
        "animated.png": encode(base, "PNG", save_all=True, append_images=[other]),
        "gif_static.gif": encode(frames[0], "GIF"),
        "animated.gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
    }
    for mode in ("L", "RGB", "RGBA"):  # the BMPs Pillow writes that TensorFlow reads right
        made[f"bmp_pillow_{mode}.bmp"] = encode(base.convert(mode), "BMP")
    pixels = np.asarray(base)
    gray = np.asarray(base.convert("L"))
    gray_palette = b"".join(bytes([i, i, i, 0]) for i in range(256))
    made.update({
        "bmp_v4.bmp": bmp(pixels, header_size=108),
        "bmp_v5.bmp": bmp(pixels, header_size=124),
        "bmp_top_down.bmp": bmp(pixels, top_down=True),
        "bmp_32_bitfields.bmp": bmp(pixels, bits=32, compression=3,
                                    masks=struct.pack("<III", 0xFF0000, 0xFF00, 0xFF)),
        "bmp_8bit_gray_palette.bmp": bmp(pixels, bits=8, palette=gray_palette, rows=indexed_rows(gray)),
    })
    return made


def _refused(rng: np.random.Generator) -> Dict[str, tuple]:
    """Files the contract refuses, by name: (bytes, a fragment of the reason)."""
    base = picture(rng)
    pixels = np.asarray(base)
    colours = b"".join(bytes(rng.integers(0, 256, 3, dtype=np.uint8).tolist() + [0]) for _ in range(256))
    gray_palette = b"".join(bytes([i, i, i, 0]) for i in range(256))
    rle = b"".join(b"".join(bytes([1, int(v)]) for v in row) + b"\0\0"
                   for row in np.asarray(base.convert("L"))[::-1]) + b"\0\1"
    refused = {
        # Every BMP variant Pillow writes that TensorFlow cannot read right.
        "bmp_pillow_1.bmp": (encode(base.convert("1"), "BMP"), "BMP with 1 bits per pixel"),
        "bmp_pillow_P.bmp": (encode(base.quantize(64), "BMP"), "8-bit BMP with a colour palette"),
        # ... and those laid out by hand.
        "bmp_os2.bmp": (bmp(pixels, header_size=12), "OS/2 header"),
        "bmp_16bit.bmp": (bmp(pixels, bits=16, compression=3, rows=b"\0" * (SIZE[0] * 2 * SIZE[1]),
                              masks=struct.pack("<III", 0xF800, 0x7E0, 0x1F)), "16 bits per pixel"),
        "bmp_rle8.bmp": (bmp(pixels, bits=8, compression=1, palette=gray_palette, rows=rle), "compressed BMP"),
        "bmp_32_swapped_bitfields.bmp": (bmp(pixels, bits=32, compression=3, masks=struct.pack(
            "<III", 0xFF, 0xFF00, 0xFF0000)), "compressed BMP"),
        "bmp_8bit_colour_palette.bmp": (bmp(pixels, bits=8, palette=colours, rows=indexed_rows(
            np.asarray(base.convert("L")))), "8-bit BMP with a colour palette"),
        # Formats TensorFlow does not read.
        "scan.tiff": (encode(base, "TIFF"), "format TIFF is not taken"),
        "targa.tga": (encode(base, "TGA"), "format TGA is not taken"),
        "texture.dds": (encode(base.convert("RGBA"), "DDS"), "format DDS is not taken"),
        "icon.ico": (encode(base, "ICO"), "format ICO is not taken"),
        "pixmap.ppm": (encode(base, "PPM"), "format PPM is not taken"),
        # Not images at all.
        "empty.jpg": (b"", "empty file (0 bytes)"),
        "notes.txt": (b"label,path\nreal,ffhq/00001.png\n", "not an image"),
        "random.jpg": (bytes([0x00]) + rng.bytes(4095), "the model's decoder reads JPEG, PNG, GIF, BMP"),
        "bomb.png": (png_claiming(100_000, 100_000), "more than 64000000 pixels by its header"),
        "tiny.png": (encode(picture(rng, (8, 8)), "PNG"), "side under 16 pixels"),
    }
    if pil_features.check("webp"):
        refused["photo.webp"] = (encode(base, "WEBP"), "format WEBP is not taken")
        refused["animated.webp"] = (encode(base, "WEBP", save_all=True, append_images=[picture(rng)]),
                                    "format WEBP is not taken")
    return refused


def _mutant(rng: np.random.Generator, data: bytes) -> bytes:
    mutated = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        mutated[int(rng.integers(0, min(len(data), HEADER_BYTES)))] = int(rng.integers(0, 256))
    return bytes(mutated)


def write(root: Path, seed: int = 0) -> Dict[str, Entry]:
    """Writes the corpus under `root`; returns each entry (path relative to `root`) and what it is."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    entries: Dict[str, Entry] = {}

    def put(name: str, data: bytes, entry: Entry) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        entries[name] = entry

    for name, data in _images(rng).items():
        put(name, data, Entry("image", pixels=rgb(data), exact=not name.startswith(("jpeg", "camera"))))
    put("copy_of_png_rgb.png", (root / "png_rgb.png").read_bytes(), entries["png_rgb.png"])
    for name, (data, reason) in _refused(rng).items():
        put(name, data, Entry("refused", reason))

    bases = {"jpg": encode(picture(rng), "JPEG", quality=85), "png": encode(picture(rng), "PNG"),
             "gif": encode(picture(rng).convert("P", palette=Image.ADAPTIVE), "GIF"),
             "bmp": encode(picture(rng), "BMP")}
    for ext, data in bases.items():
        for offset in np.linspace(1, len(data) - 1, TRUNCATIONS_PER_FORMAT).astype(int):
            put(f"truncated/{ext}_{offset:06d}.{ext}", data[:offset], Entry("fuzz"))
        for number in range(MUTATIONS_PER_FORMAT):
            put(f"mutated/{ext}_{number:03d}.{ext}", _mutant(rng, data), Entry("fuzz"))

    # A folder named like an image is a folder: walked into, not read.
    inside = encode(picture(rng), "PNG")
    put("x.jpg/inside.png", inside, Entry("image", pixels=rgb(inside)))
    os.mkfifo(root / "pipe.jpg")
    entries["pipe.jpg"] = Entry("other", "not a regular file: a FIFO")
    os.symlink(root / "nowhere.jpg", root / "dangling.jpg")
    entries["dangling.jpg"] = Entry("other", "broken link")
    return entries
