"""Synthetic sample data shaped like the eight datasets of the founding notes.

Nothing can be downloaded where the project is built and tested, so the default
pipeline runs on images this module draws. They are cartoon faces, not photos
of anyone, and every file says so in its JPEG comment.

What makes the set useful for a detector is *how* each image is produced:

* Real sources (FFHQ_Orig, FFHQ_Wide, CelebA) are rendered at full resolution,
  blurred a little by "optics" and given signal-dependent sensor noise, as a
  camera would. Fakes get the same noise, so noise level is no shortcut.
* Fake sources are rendered at half resolution and up-sampled by the source's
  own generator-like up-sampler, which leaves a periodic, spectral fingerprint:
  nearest-neighbour blocks (PGGAN), transposed-convolution checkerboards with a
  source-specific kernel (StyleGAN_FFHQ, StyleGAN_CelebA), or smooth
  up-sampling plus a faint periodic texture (Gen1, Gen2: StyleGAN2).

Scene content is drawn from one distribution for every source of a shot type,
and every file is a baseline JPEG of the same size, quality and chroma
subsampling, so format, quality and size carry no label. Because each fake
source has its own fingerprint, whether a detector trained on some generators
catches the others is a real question.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import multiprocessing
import os
import shutil
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml
from PIL import Image

from fakeface import catalog as catalog_lib
from fakeface import features

JPEG_QUALITY = 92
SYNTHETIC_NOTICE = (
    b"fakeface synthetic sample image: drawn by a program, not a photograph "
    b"of any person; see `fakeface sample-data`."
)
_MARKER_FILE = "SYNTHETIC_SAMPLE_DATA.txt"


@dataclasses.dataclass(frozen=True)
class Upsampler:
    """How a fake source turns its half-resolution render into a full image."""

    kind: str  # "nearest" | "transposed_conv" | "smooth_pattern"
    kernel: Optional[Sequence[Sequence[float]]] = None  # transposed_conv weights
    period: int = 0  # smooth_pattern: period in pixels
    angle_deg: float = 0.0  # smooth_pattern: orientation of the texture
    amplitude: float = 0.0  # smooth_pattern: peak amplitude, 0..255 scale


@dataclasses.dataclass(frozen=True)
class SampleSource:
    name: str
    label: int
    generator: str
    shot: str
    upsampler: Optional[Upsampler] = None  # None for real (camera) sources
    group: Optional[str] = None  # catalog group (fakeface/catalog.py), as in catalogs/founding.yaml


# Transposed-convolution kernels (3x3 over a stride-2 zero-inserted grid). Their
# phase sums differ, which is what makes the checkerboard.
_KERNEL_STYLEGAN_FFHQ = ((0.30, 0.55, 0.25), (0.60, 1.00, 0.50), (0.20, 0.50, 0.30))
_KERNEL_STYLEGAN_CELEBA = ((0.10, 0.70, 0.40), (0.45, 1.00, 0.75), (0.35, 0.40, 0.05))

SOURCES: Sequence[SampleSource] = (
    SampleSource("Gen1", features.FAKE, "StyleGAN2", features.CLOSE_UP,
                 Upsampler("smooth_pattern", period=4, angle_deg=0.0, amplitude=3.5), group="ffhq-close-up"),
    SampleSource("Gen2", features.FAKE, "StyleGAN2", features.WIDE,
                 Upsampler("smooth_pattern", period=4, angle_deg=90.0, amplitude=3.5), group="ffhq-wide"),
    SampleSource("FFHQ_Orig", features.REAL, "camera", features.CLOSE_UP, group="ffhq-close-up"),
    SampleSource("FFHQ_Wide", features.REAL, "camera", features.WIDE, group="ffhq-wide"),
    SampleSource("CelebA", features.REAL, "camera", features.CLOSE_UP, group="celeba"),
    SampleSource("PGGAN", features.FAKE, "PGGAN", features.CLOSE_UP, Upsampler("nearest")),
    SampleSource("StyleGAN_FFHQ", features.FAKE, "StyleGAN", features.CLOSE_UP,
                 Upsampler("transposed_conv", kernel=_KERNEL_STYLEGAN_FFHQ)),
    SampleSource("StyleGAN_CelebA", features.FAKE, "StyleGAN", features.CLOSE_UP,
                 Upsampler("transposed_conv", kernel=_KERNEL_STYLEGAN_CELEBA), group="celeba"),
)
SOURCES_BY_NAME: Dict[str, SampleSource] = {s.name: s for s in SOURCES}
# The founding notes' three models, as catalogs/founding.yaml names them:
# the sample catalog offers the same experiments on the stand-in sources.
EXPERIMENTS: Dict[str, Sequence[str]] = {
    "v1": ("Gen1", "FFHQ_Orig"),  # close-ups only
    "v2": ("Gen2", "FFHQ_Wide"),  # wide shots only
    "v3": ("Gen1", "Gen2", "FFHQ_Orig", "FFHQ_Wide"),  # all four
}


def _source_rng(seed: int, source: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(source.encode()), index])


def _content_rng(seed: int, source: str, index: int) -> np.random.Generator:
    # A stream of its own, so that the pixel processing of a source never
    # shifts what its scenes show; the scene distribution is the same for all.
    return np.random.default_rng([seed, zlib.crc32(source.encode()), 7919, index])


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field in [-1, 1] of shape [size, size]."""
    coarse = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
    img = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    return np.clip(np.asarray(img), -1.0, 1.0)


def render_scene(rng: np.random.Generator, size: int, shot: str) -> np.ndarray:
    """Draws a cartoon face; returns float32 RGB [size, size, 3] on a 0..255 scale."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    bg_a, bg_b = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(direction) * xx + np.sin(direction) * yy + 1.0) / 2.0
    img = bg_a[None, None, :] * (1 - ramp[..., None]) + bg_b[None, None, :] * ramp[..., None]
    img += 18.0 * _smooth_field(rng, size, 5)[..., None]

    scale = rng.uniform(0.36, 0.44) if shot == features.CLOSE_UP else rng.uniform(0.16, 0.22)
    cx = 0.5 + rng.uniform(-0.04, 0.04)
    cy = (0.52 if shot == features.CLOSE_UP else 0.42) + rng.uniform(-0.04, 0.04)
    aspect = rng.uniform(1.15, 1.35)
    skin = np.array([rng.uniform(120, 235), rng.uniform(85, 190), rng.uniform(60, 160)])
    hair = rng.uniform(15, 120, 3)

    if shot == features.WIDE:
        shoulders = ((yy - (cy + scale * 2.6)) / (scale * 1.9)) ** 2 + ((xx - cx) / (scale * 2.4)) ** 2 < 1.0
        img[shoulders] = rng.uniform(20, 230, 3)

    def ellipse(x0, y0, rx, ry):
        return ((xx - x0) / rx) ** 2 + ((yy - y0) / ry) ** 2 < 1.0

    img[ellipse(cx, cy - scale * 0.25, scale * 1.08, scale * aspect * 0.95)] = hair
    face = ellipse(cx, cy, scale, scale * aspect)
    shading = 1.0 + 0.18 * ((xx - cx) / scale) * np.cos(direction)
    img[face] = (skin[None, :] * shading[face][:, None])
    eye_dx, eye_y = scale * rng.uniform(0.35, 0.45), cy - scale * aspect * rng.uniform(0.15, 0.3)
    eye_r = scale * rng.uniform(0.09, 0.14)
    iris = rng.uniform(20, 140, 3)
    for side in (-1, 1):
        img[ellipse(cx + side * eye_dx, eye_y, eye_r * 1.6, eye_r)] = (245, 245, 240)
        img[ellipse(cx + side * eye_dx, eye_y, eye_r * 0.7, eye_r * 0.9)] = iris
    mouth_y = cy + scale * aspect * rng.uniform(0.4, 0.55)
    img[ellipse(cx, mouth_y, scale * rng.uniform(0.25, 0.4), scale * rng.uniform(0.05, 0.12))] = (
        rng.uniform(120, 200), rng.uniform(40, 90), rng.uniform(50, 100))
    img[ellipse(cx, cy + scale * 0.1, scale * 0.08, scale * 0.18)] = skin * 0.85
    img *= 1.0 + 0.06 * _smooth_field(rng, size, 9)[..., None]
    return img.astype(np.float32)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(round(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(img, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(t * padded[i:i + img.shape[0], :, :] for i, t in enumerate(taps))
    return sum(t * rows[:, i:i + img.shape[1], :] for i, t in enumerate(taps))


def sensor_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Signal-dependent (shot) and read noise."""
    shot_noise = rng.normal(0.0, 1.0, img.shape) * np.sqrt(np.maximum(img, 0.0) * 0.06)
    read_noise = rng.normal(0.0, 1.4, img.shape[:2])[..., None]
    return img + shot_noise + read_noise


def camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Optics blur, then sensor noise."""
    return sensor_noise(_blur(img, rng.uniform(0.5, 0.8)), rng)


def _downsample_half(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[0] // 2, img.shape[1] // 2
    return img[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean(axis=(1, 3))


def upsample(low: np.ndarray, upsampler: Upsampler, size: int) -> np.ndarray:
    """Up-samples a half-resolution render by 2 the way the generator would."""
    if upsampler.kind == "nearest":
        out = low.repeat(2, axis=0).repeat(2, axis=1)
    elif upsampler.kind == "transposed_conv":
        kernel = np.asarray(upsampler.kernel, dtype=np.float32)
        zeros = np.zeros((low.shape[0] * 2, low.shape[1] * 2, 3), np.float32)
        zeros[::2, ::2] = low
        # Normalised so the mean brightness is kept; the phases stay unequal.
        kernel = kernel * 4.0 / kernel.sum()
        padded = np.pad(zeros, ((1, 1), (1, 1), (0, 0)), mode="reflect")
        out = np.zeros_like(zeros)
        for i in range(3):
            for j in range(3):
                out += kernel[i, j] * padded[i:i + zeros.shape[0], j:j + zeros.shape[1]]
    elif upsampler.kind == "smooth_pattern":
        channels = [np.asarray(Image.fromarray(np.ascontiguousarray(low[..., c], dtype=np.float32)).resize(
            (low.shape[1] * 2, low.shape[0] * 2), Image.BILINEAR)) for c in range(3)]
        out = np.stack(channels, axis=-1)
        yy, xx = np.mgrid[0:out.shape[0], 0:out.shape[1]].astype(np.float32)
        theta = np.deg2rad(upsampler.angle_deg)
        phase = 2 * np.pi * (np.cos(theta) * xx + np.sin(theta) * yy) / upsampler.period
        out = out + upsampler.amplitude * np.sign(np.sin(phase))[..., None]
    else:
        raise ValueError(f"unknown up-sampler kind {upsampler.kind!r}")
    return out[:size, :size]


def render_image(source: SampleSource, index: int, size: int, seed: int) -> np.ndarray:
    """The uint8 RGB pixels of image `index` of `source`."""
    if size < 16 or size % 2:
        raise ValueError(f"image size must be an even number of at least 16 pixels, got {size}")
    scene = render_scene(_content_rng(seed, source.name, index), size, source.shot)
    rng = _source_rng(seed, source.name, index)
    if source.upsampler is None:
        pixels = camera(scene, rng)
    else:
        low = _downsample_half(scene)
        low = low + rng.normal(0.0, 1.2, low.shape)  # generator's own texture noise
        # The same full-resolution noise as the cameras', so that noise level
        # is no shortcut and only the up-sampler's fingerprint tells fakes apart.
        pixels = sensor_noise(upsample(low, source.upsampler, size), rng)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """Encodes every sample image identically: baseline JPEG, one quality, 4:2:0."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(
        buffer, format="JPEG", quality=JPEG_QUALITY, subsampling="4:2:0",
        optimize=False, progressive=False, comment=SYNTHETIC_NOTICE)
    return buffer.getvalue()


def _write_if_changed(path: str, data: bytes) -> bool:
    """Writes only when the bytes differ, so an unchanged file keeps its mtime
    and ExampleGen's input fingerprint (and with it the pipeline cache) holds."""
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return True


def _draw(job: Tuple[str, SampleSource, int, int, int]) -> None:
    path, source, index, size, seed = job
    _write_if_changed(path, encode_jpeg(render_image(source, index, size, seed)))


def generate(out_dir: str, per_source: int = 40, size: int = 64, seed: int = 0,
             sources: Sequence[SampleSource] = SOURCES, workers: int = 1) -> str:
    """Writes `per_source` images for each source and a catalog; returns its path.

    Re-running with the same arguments rewrites nothing. A folder that holds
    anything but an earlier sample set is refused rather than mixed into.
    Every image depends only on its source, index, size and seed, so `workers`
    processes draw the same files as one.
    """
    if per_source < 1:
        raise ValueError(f"per_source must be at least 1, got {per_source}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if size < 16 or size % 2:
        raise ValueError(f"image size must be an even number of at least 16 pixels, got {size}")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not os.path.exists(
            os.path.join(out_dir, _MARKER_FILE)):
        raise FileExistsError(
            f"{out_dir}: folder is not empty and is not a fakeface sample set; "
            "choose an empty or new folder")
    os.makedirs(out_dir, exist_ok=True)
    notice = (
        "SYNTHETIC DATA. Every image here was drawn by `fakeface sample-data` "
        f"(per_source={per_source}, size={size}, seed={seed}); none is a photograph.\n"
    )
    # Written first, so that a run stopped half-way leaves a folder that the
    # next run recognises and completes.
    _write_if_changed(os.path.join(out_dir, _MARKER_FILE), notice.encode())
    wanted = {_MARKER_FILE, catalog_lib.CATALOG_FILE_NAME}
    entries: List[dict] = []
    jobs = []
    for source in sources:
        source_dir = os.path.join(out_dir, source.name)
        os.makedirs(source_dir, exist_ok=True)
        wanted.add(source.name)
        wanted_files = set()
        for index in range(per_source):
            name = f"{source.name.lower()}_{index:05d}.jpg"
            wanted_files.add(name)
            jobs.append((os.path.join(source_dir, name), source, index, size, seed))
        for stale in set(os.listdir(source_dir)) - wanted_files:
            os.remove(os.path.join(source_dir, stale))
        entry = {
            "name": source.name,
            "location": source.name,
            "label": features.LABEL_NAMES[source.label],
            "generator": source.generator,
            "shot": source.shot,
        }
        if source.group:
            entry["group"] = source.group
        entries.append(entry)
    if workers == 1:
        for job in jobs:
            _draw(job)
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_draw, jobs, chunksize=8):
                pass
    for stale in set(os.listdir(out_dir)) - wanted:
        stale_path = os.path.join(out_dir, stale)
        if os.path.isdir(stale_path):
            shutil.rmtree(stale_path)
        else:
            os.remove(stale_path)
    catalog_path = os.path.join(out_dir, catalog_lib.CATALOG_FILE_NAME)
    text = "# fakeface dataset catalog for synthetic sample data; see fakeface/catalog.py.\n"
    drawn = {source.name for source in sources}
    experiments = {name: list(names) for name, names in EXPERIMENTS.items() if drawn.issuperset(names)}
    text += yaml.safe_dump({"datasets": entries, **({"experiments": experiments} if experiments else {})},
                           sort_keys=False)
    _write_if_changed(catalog_path, text.encode())
    return catalog_path


def content_digest(out_dir: str) -> str:
    """SHA-256 over every file of a sample set, for determinism checks."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(out_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, out_dir).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()
