"""How one image file was saved, read from its encoded bytes without decoding pixels.

A detector can learn these instead of the picture when the classes were saved
differently ("PNG means real", "quality 99 means fake", "cameras write EXIF"),
so the shortcut guard (fakeface/shortcuts.py) checks each of them.

Only the container is parsed: JPEG marker segments, PNG chunks, the GIF and
BMP headers. Nothing is decompressed, so a file costs a pass over its bytes.

`strip_metadata` removes EXIF, ICC profiles, JPEG comments and PNG text
chunks by dropping those segments or chunks; every byte of the compressed
pixels is kept, so the decoded pixels are exactly those of the original
(TensorFlow's decoder, which training and serving use, ignores all four).
"""

from __future__ import annotations

import dataclasses
import re
import struct
from typing import Iterator, List, Tuple

from fakeface import images

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
# Frame headers (SOF) by marker; SOF2, 6, 10 and 14 are progressive.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_SOS, _EOI, _DQT, _COM, _APP0, _APP1, _APP2, _APP14 = 0xDA, 0xD9, 0xDB, 0xFE, 0xE0, 0xE1, 0xE2, 0xEE
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})
# In a scan's entropy-coded data, 0xFF is followed by 0x00 (a stuffed byte),
# RST0-7 or more 0xFF fill; any other byte after it is the next marker.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_EXIF_ID = b"Exif\x00\x00"
_ICC_ID = b"ICC_PROFILE\x00"
# PNG chunks that describe the file rather than the pixels: text, ICC, EXIF and
# modification time. tRNS, gAMA, sRGB and the like stay: decoders may use them.
_PNG_TEXT = frozenset({b"tEXt", b"zTXt", b"iTXt"})
_PNG_METADATA = _PNG_TEXT | {b"iCCP", b"eXIf", b"tIME"}
# Luma sampling factors over chroma's, (horizontal, vertical), by their usual name.
_SUBSAMPLING = {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0", (1, 2): "4:4:0",
                (4, 1): "4:1:1", (4, 2): "4:1:0"}
NOT_JPEG = "not JPEG"
# The subsampling of a JPEG whose segments cannot be parsed although its pixels decode.
UNPARSED = "unparsed"


class HeaderError(ValueError):
    """The bytes' header cannot be read; str() is the reason."""


@dataclasses.dataclass(frozen=True)
class FileAttributes:
    format: str  # "JPEG", "PNG", "GIF" or "BMP"
    width: int
    height: int
    # IJG-equivalent quality of the luma quantization table; 0 when not a JPEG.
    jpeg_quality: int
    # "4:4:4", "4:2:0", ..., "grayscale", "4 components" (CMYK); NOT_JPEG otherwise.
    chroma_subsampling: str
    # A progressive JPEG, or an interlaced PNG or GIF: the picture arrives coarse first.
    progressive: bool
    resolution_bucket: str  # features.RESOLUTION_BUCKETS name of the shorter side
    bytes_per_pixel: float  # file size over width x height
    exif: bool
    icc_profile: bool
    jpeg_comment: bool
    png_text: bool  # tEXt, zTXt or iTXt chunks


def read(data: bytes) -> FileAttributes:
    """The attributes of an encoded JPEG, PNG, GIF or BMP; HeaderError if unreadable."""
    if data.startswith(_JPEG_SOI):
        fields = _jpeg(data)
    elif data.startswith(_PNG_SIGNATURE):
        fields = _png(data)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        fields = _gif(data)
    elif data.startswith(b"BM"):
        fields = _bmp(data)
    else:
        raise HeaderError("not a JPEG, PNG, GIF or BMP file")
    width, height = fields["width"], fields["height"]
    if width < 1 or height < 1:
        raise HeaderError(f"degenerate size {width}x{height} in the header")
    defaults = dict(jpeg_quality=0, chroma_subsampling=NOT_JPEG, progressive=False,
                    exif=False, icc_profile=False, jpeg_comment=False, png_text=False)
    defaults.update(fields)
    return FileAttributes(resolution_bucket=images.resolution_bucket(width, height),
                          bytes_per_pixel=len(data) / (width * height), **defaults)


def unparsed(data: bytes, format_name: str, width: int, height: int) -> FileAttributes:
    """What is known of a file whose container read() cannot parse but whose pixels decode: format and size.

    Its chroma subsampling reads UNPARSED, so a class saved that way still
    shows in the guard.
    """
    return FileAttributes(format=format_name, width=width, height=height, jpeg_quality=0,
                          chroma_subsampling=UNPARSED if format_name == "JPEG" else NOT_JPEG, progressive=False,
                          resolution_bucket=images.resolution_bucket(width, height),
                          bytes_per_pixel=len(data) / (width * height),
                          exif=False, icc_profile=False, jpeg_comment=False, png_text=False)


def strip_metadata(data: bytes) -> bytes:
    """`data` without EXIF, ICC, comments or PNG text: the same pixels, never re-encoded.

    JPEG: drops COM and every APPn segment but APP0 (JFIF) and APP14 (Adobe,
    which tells the decoder the colour transform); XMP and IPTC go with EXIF.
    PNG: drops text, iCCP, eXIf and tIME chunks. GIF and BMP come back as they
    are: neither can hold any of the four. HeaderError if the container is
    malformed.
    """
    if data.startswith(_JPEG_SOI):
        kept = [data[start:end] for marker, start, _, end in _jpeg_segments(data)
                if not _is_jpeg_metadata(marker)]
        return b"".join(kept)
    if data.startswith(_PNG_SIGNATURE):
        kept = [data[start:end] for kind, start, end in _png_chunks(data) if kind not in _PNG_METADATA]
        return _PNG_SIGNATURE + b"".join(kept)
    return data


def _is_jpeg_metadata(marker: int) -> bool:
    return marker == _COM or (0xE1 <= marker <= 0xEF and marker != _APP14)


def _jpeg_segments(data: bytes) -> Iterator[Tuple[int, int, int, int]]:
    """(marker, start, payload start, end) of every segment.

    A segment runs from its marker to the next; a scan's entropy-coded data
    goes with its SOS.

    Bytes after EOI (such as an MPO's further frames) come as one last segment
    of marker -1, so that joining every segment gives back `data` exactly.
    """
    yield 0xD8, 0, 2, 2
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise HeaderError(f"JPEG: expected a marker at byte {pos}")
        start = pos
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= len(data):
            raise HeaderError("JPEG: truncated after a marker prefix")
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            yield marker, start, pos, pos
            if marker == _EOI:
                if pos < len(data):
                    yield -1, pos, pos, len(data)
                return
            continue
        if pos + 2 > len(data):
            raise HeaderError(f"JPEG: segment 0x{marker:02X} truncated")
        end = pos + struct.unpack(">H", data[pos:pos + 2])[0]
        if end > len(data) or end < pos + 2:
            raise HeaderError(f"JPEG: segment 0x{marker:02X} runs past the end of the file")
        payload = pos + 2
        if marker == _SOS:
            end = _entropy_end(data, end)
        yield marker, start, payload, end
        pos = end
    raise HeaderError("JPEG: no end-of-image marker")


def _entropy_end(data: bytes, pos: int) -> int:
    """Where a scan's entropy-coded data ends: at the first marker other than RSTn or a stuffed 0xFF00."""
    found = _SCAN_END.search(data, pos)
    if found is None:
        raise HeaderError("JPEG: scan data runs to the end of the file (truncated)")
    return found.start()


def _jpeg(data: bytes) -> dict:
    fields = dict(exif=False, icc_profile=False, jpeg_comment=False)
    tables = {}
    frame = None
    for marker, _, payload_start, end in _jpeg_segments(data):
        payload = data[payload_start:end] if marker != _SOS else b""
        if marker == _APP1 and payload.startswith(_EXIF_ID):
            fields["exif"] = True
        elif marker == _APP2 and payload.startswith(_ICC_ID):
            fields["icc_profile"] = True
        elif marker == _COM:
            fields["jpeg_comment"] = True
        elif marker == _DQT:
            tables.update(_quantization_tables(payload))
        elif marker in _SOF_MARKERS and frame is None:
            frame = marker, payload
    if frame is None:
        raise HeaderError("JPEG: no frame header (SOF)")
    marker, payload = frame
    if len(payload) < 6:
        raise HeaderError("JPEG: frame header truncated")
    height, width, components = struct.unpack(">HHB", payload[1:6])
    if len(payload) < 6 + 3 * components or components < 1:
        raise HeaderError("JPEG: frame header truncated")
    sampling = [(payload[7 + 3 * i] >> 4, payload[7 + 3 * i] & 0x0F) for i in range(components)]
    luma_table = tables.get(payload[8])
    if luma_table is None:
        raise HeaderError("JPEG: the luma quantization table is missing")
    return dict(fields, format="JPEG", width=width, height=height,
                jpeg_quality=images.estimate_jpeg_quality(luma_table),
                chroma_subsampling=_subsampling(sampling), progressive=marker in _PROGRESSIVE_SOF)


def _quantization_tables(payload: bytes) -> dict:
    tables, pos = {}, 0
    while pos < len(payload):
        precision, table_id = payload[pos] >> 4, payload[pos] & 0x0F
        size = 128 if precision else 64
        values = payload[pos + 1:pos + 1 + size]
        if len(values) < size:
            raise HeaderError("JPEG: quantization table truncated")
        tables[table_id] = struct.unpack(">64H", values) if precision else tuple(values)
        pos += 1 + size
    return tables


def _subsampling(sampling: List[Tuple[int, int]]) -> str:
    if len(sampling) == 1:
        return "grayscale"
    if len(sampling) != 3:
        return f"{len(sampling)} components"
    (luma_h, luma_v), chroma = sampling[0], set(sampling[1:])
    if len(chroma) == 1:
        chroma_h, chroma_v = chroma.pop()
        if chroma_h and chroma_v and luma_h % chroma_h == 0 and luma_v % chroma_v == 0:
            name = _SUBSAMPLING.get((luma_h // chroma_h, luma_v // chroma_v))
            if name:
                return name
    return ",".join(f"{h}x{v}" for h, v in sampling)


def _png_chunks(data: bytes) -> Iterator[Tuple[bytes, int, int]]:
    """(type, start, end) of every chunk after the signature, up to and including IEND."""
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise HeaderError("PNG: truncated before IEND")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise HeaderError(f"PNG: chunk {kind!r} runs past the end of the file")
        yield kind, pos, end
        if kind == b"IEND":
            if end < len(data):
                yield b"", end, len(data)  # trailing bytes, kept as they are
            return
        pos = end


def _png(data: bytes) -> dict:
    kinds = set()
    header = None
    for kind, start, end in _png_chunks(data):
        kinds.add(kind)
        if kind == b"IHDR":
            header = data[start + 8:end - 4]
    if header is None or len(header) != 13:
        raise HeaderError("PNG: no valid IHDR chunk")
    width, height = struct.unpack(">II", header[:8])
    return dict(format="PNG", width=width, height=height, progressive=header[12] == 1,
                png_text=bool(kinds & _PNG_TEXT), icc_profile=b"iCCP" in kinds, exif=b"eXIf" in kinds)


def _gif(data: bytes) -> dict:
    if len(data) < 13:
        raise HeaderError("GIF: header truncated")
    width, height, flags = struct.unpack("<HHB", data[6:11])
    pos = 13 + ((3 << ((flags & 0x07) + 1)) if flags & 0x80 else 0)
    while pos < len(data):
        block = data[pos]
        if block == 0x2C:  # image descriptor: its flags say whether it is interlaced
            if pos + 10 > len(data):
                break
            return dict(format="GIF", width=width, height=height, progressive=bool(data[pos + 9] & 0x40))
        if block != 0x21 or pos + 2 > len(data):  # only extensions may come before the first image
            break
        pos += 2
        while pos < len(data) and data[pos]:  # sub-blocks, each led by its size
            pos += data[pos] + 1
        pos += 1
    raise HeaderError("GIF: no image descriptor")


def _bmp(data: bytes) -> dict:
    if len(data) < 26:
        raise HeaderError("BMP: header truncated")
    if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 core header: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return dict(format="BMP", width=width, height=abs(height))
