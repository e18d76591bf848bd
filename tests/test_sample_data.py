"""Tests of the synthetic sample data (fakeface/sample_data.py)."""

import itertools
import os

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from fakeface import catalog, features, sample_data

FAKE_SOURCES = ("Gen1", "Gen2", "PGGAN", "StyleGAN_FFHQ", "StyleGAN_CelebA")
REAL_SOURCES = ("FFHQ_Orig", "FFHQ_Wide", "CelebA")
WIDE_SOURCES = ("Gen2", "FFHQ_Wide")

PER_SOURCE = 24
SIZE = 64
SEED = 0

# Measured with PER_SOURCE=24, SIZE=64, SEED=0: the weakest fake (PGGAN) peaks at
# 5.9x the strongest real source; with the up-samplers replaced by the camera
# the best bin of any fake reaches only 1.55x.
MIN_FINGERPRINT_RATIO = 3.0
# Measured: the most alike fakes (the two StyleGAN kernels) correlate at 0.41;
# with every fake up-sampled by plain np.repeat, or sent through the camera,
# every pair correlates at 0.76 or more.
MAX_FINGERPRINT_CORRELATION = 0.6


def _files(root):
    return sorted(
        os.path.join(dirpath, name) for dirpath, _, names in os.walk(root) for name in names)


def _images(root):
    return [path for path in _files(root) if path.endswith(".jpg")]


def _small_set(out_dir, **kwargs):
    args = dict(per_source=3, size=32, seed=0)
    args.update(kwargs)
    return sample_data.generate(str(out_dir), **args)


@pytest.fixture(scope="module")
def sample_set(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("sample") / "set"
    catalog_path = sample_data.generate(str(out_dir), per_source=PER_SOURCE, size=SIZE, seed=SEED)
    return out_dir, catalog_path


@pytest.fixture(scope="module")
def sample_catalog(sample_set):
    return catalog.load(sample_set[1])


def _residual_spectrum(paths):
    """Mean FFT magnitude of each image minus its 3x3 box blur.

    The blur residual keeps little of the smooth scene content, so what is left
    is noise and whatever periodic trace the up-sampler leaves.
    """
    total = None
    for path in paths:
        with Image.open(path) as img:
            gray = np.asarray(img.convert("L"), dtype=np.float64)
        h, w = gray.shape
        padded = np.pad(gray, 1, mode="reflect")
        blurred = sum(padded[i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0
        magnitude = np.abs(np.fft.fft2(gray - blurred))
        total = magnitude if total is None else total + magnitude
    return total / len(paths)


@pytest.fixture(scope="module")
def spectra(sample_catalog):
    return {d.name: _residual_spectrum(_images(d.root)) for d in sample_catalog.datasets}


def test_same_seed_gives_byte_identical_sets(tmp_path):
    _small_set(tmp_path / "a")
    _small_set(tmp_path / "b")
    assert len(_images(tmp_path / "a")) == 3 * len(sample_data.SOURCES)
    assert sample_data.content_digest(str(tmp_path / "a")) == sample_data.content_digest(str(tmp_path / "b"))


def test_two_workers_draw_the_same_files_as_one(tmp_path):
    sample_data.generate(str(tmp_path / "one"), per_source=5, size=32, seed=2)
    sample_data.generate(str(tmp_path / "two"), per_source=5, size=32, seed=2, workers=2)
    assert sample_data.content_digest(str(tmp_path / "one")) == sample_data.content_digest(str(tmp_path / "two"))


def test_different_seed_gives_different_images(tmp_path):
    _small_set(tmp_path / "a", seed=0)
    _small_set(tmp_path / "b", seed=1)
    assert sample_data.content_digest(str(tmp_path / "a")) != sample_data.content_digest(str(tmp_path / "b"))
    # The marker file records the seed, so the whole-folder digest would differ
    # even if the images did not; compare the images themselves.
    images_a = _images(tmp_path / "a")
    assert images_a
    for path_a in images_a:
        path_b = str(tmp_path / "b" / os.path.relpath(path_a, tmp_path / "a"))
        with open(path_a, "rb") as fa, open(path_b, "rb") as fb:
            assert fa.read() != fb.read(), path_a


def test_rerun_with_same_arguments_rewrites_nothing(tmp_path):
    out_dir = tmp_path / "set"
    _small_set(out_dir)
    # Back-date every file: a rewrite within the file system's timestamp
    # granularity would otherwise keep the same mtime and go unnoticed.
    past_ns = 1_000_000_000 * 10**9
    before = _files(out_dir)
    for path in before:
        os.utime(path, ns=(past_ns, past_ns))
    _small_set(out_dir)
    assert _files(out_dir) == before
    rewritten = [path for path in before if os.stat(path).st_mtime_ns != past_ns]
    assert rewritten == []


def test_rerun_with_fewer_images_removes_stale_ones(tmp_path):
    _small_set(tmp_path / "set", per_source=4)
    _small_set(tmp_path / "set", per_source=2)
    _small_set(tmp_path / "fresh", per_source=2)
    for source in sample_data.SOURCES:
        assert len(_images(tmp_path / "set" / source.name)) == 2, source.name
    assert [os.path.relpath(p, tmp_path / "set") for p in _files(tmp_path / "set")] == [
        os.path.relpath(p, tmp_path / "fresh") for p in _files(tmp_path / "fresh")]
    assert sample_data.content_digest(str(tmp_path / "set")) == sample_data.content_digest(str(tmp_path / "fresh"))


def test_catalog_lists_the_founding_sources_with_their_roles(sample_catalog):
    roles = {d.name: (d.label_name, d.shot) for d in sample_catalog.datasets}
    expected = {}
    for name in FAKE_SOURCES + REAL_SOURCES:
        label = "fake" if name in FAKE_SOURCES else "real"
        shot = features.WIDE if name in WIDE_SOURCES else features.CLOSE_UP
        expected[name] = (label, shot)
    assert roles == expected


def test_catalog_groups_the_datasets_as_the_founding_notes_pair_them(sample_catalog):
    groups = {}
    for dataset in sample_catalog.datasets:
        groups.setdefault(dataset.group, set()).add(dataset.name)
    assert groups == {"ffhq-close-up": {"FFHQ_Orig", "Gen1"}, "ffhq-wide": {"FFHQ_Wide", "Gen2"},
                      "celeba": {"CelebA", "StyleGAN_CelebA"}, None: {"PGGAN", "StyleGAN_FFHQ"}}


def test_every_image_lies_under_its_datasets_location(sample_set, sample_catalog):
    out_dir, _ = sample_set
    found = {}
    for dataset in sample_catalog.datasets:
        assert os.path.isdir(dataset.root), dataset.name
        found[dataset.name] = _images(dataset.root)
        assert len(found[dataset.name]) == PER_SOURCE, dataset.name
    all_found = sorted(itertools.chain.from_iterable(found.values()))
    assert all_found == _images(out_dir)


def test_each_datasets_files_are_that_sources_renders(sample_catalog):
    """A dataset's label is only right if its folder holds that source's images."""
    for dataset in sample_catalog.datasets:
        source = sample_data.SOURCES_BY_NAME[dataset.name]
        assert dataset.label == source.label
        expected = {sample_data.encode_jpeg(sample_data.render_image(source, i, SIZE, SEED))
                    for i in range(PER_SOURCE)}
        actual = set()
        for path in _images(dataset.root):
            with open(path, "rb") as f:
                actual.add(f.read())
        assert actual == expected, dataset.name


def test_real_and_fake_files_are_encoded_alike(sample_catalog):
    encodings = {features.REAL: set(), features.FAKE: set()}
    for dataset in sample_catalog.datasets:
        for path in _images(dataset.root):
            with Image.open(path) as img:
                encodings[dataset.label].add((
                    img.format,
                    img.size,
                    JpegImagePlugin.get_sampling(img),
                    tuple(sorted((k, tuple(v)) for k, v in img.quantization.items())),
                    tuple(sorted(img.info.items())),
                ))
    assert len(encodings[features.REAL]) == 1, encodings[features.REAL]
    assert encodings[features.REAL] == encodings[features.FAKE]
    (fmt, size, sampling, _, _), = encodings[features.REAL]
    assert (fmt, size) == ("JPEG", (SIZE, SIZE))
    assert sampling == 2  # 4:2:0


def test_every_file_says_it_is_synthetic(sample_catalog):
    comments = {features.REAL: set(), features.FAKE: set()}
    for dataset in sample_catalog.datasets:
        for path in _images(dataset.root):
            with Image.open(path) as img:
                comments[dataset.label].add(img.info.get("comment"))
    assert comments[features.REAL] == comments[features.FAKE] == {sample_data.SYNTHETIC_NOTICE}
    assert b"synthetic" in sample_data.SYNTHETIC_NOTICE
    assert b"not a photograph" in sample_data.SYNTHETIC_NOTICE


@pytest.mark.parametrize("fake", FAKE_SOURCES)
def test_each_fake_source_has_a_spectral_fingerprint(spectra, fake):
    strongest_real = np.max([spectra[name] for name in REAL_SOURCES], axis=0)
    ratio = spectra[fake] / strongest_real
    ratio[0, 0] = 0.0  # the residual has no DC worth comparing
    peak = np.unravel_index(np.argmax(ratio), ratio.shape)
    assert ratio[peak] > MIN_FINGERPRINT_RATIO, (
        f"{fake}: best bin {peak} is only {ratio[peak]:.2f}x the strongest real source")


def test_fake_sources_have_distinct_fingerprints(spectra):
    def normalized(spectrum):
        s = spectrum.copy()
        s[0, 0] = 0.0
        return (s / np.linalg.norm(s)).ravel()

    correlations = {
        (a, b): float(np.corrcoef(normalized(spectra[a]), normalized(spectra[b]))[0, 1])
        for a, b in itertools.combinations(FAKE_SOURCES, 2)}
    too_alike = {pair: round(c, 3) for pair, c in correlations.items() if c >= MAX_FINGERPRINT_CORRELATION}
    assert too_alike == {}


def test_folder_with_unrelated_files_is_refused_and_left_alone(tmp_path):
    out_dir = tmp_path / "photos"
    (out_dir / "album").mkdir(parents=True)
    (out_dir / "holiday.jpg").write_bytes(b"not really a jpeg")
    (out_dir / "album" / "notes.txt").write_text("keep me")

    def snapshot():
        state = {}
        for path in _files(out_dir):
            with open(path, "rb") as f:
                state[path] = (f.read(), os.stat(path).st_mtime_ns)
        return state, sorted(os.listdir(out_dir))

    before = snapshot()
    with pytest.raises(FileExistsError, match="photos"):
        _small_set(out_dir)
    assert snapshot() == before


@pytest.mark.parametrize("size", [15, 17, 14, 8, 0, -16])
def test_bad_size_is_refused(tmp_path, size):
    with pytest.raises(ValueError, match="size"):
        _small_set(tmp_path / "set", size=size)


def test_refused_size_leaves_the_folder_usable(tmp_path):
    with pytest.raises(ValueError):
        _small_set(tmp_path / "set", size=15)
    _small_set(tmp_path / "set", size=16)
    assert len(_images(tmp_path / "set")) == 3 * len(sample_data.SOURCES)


@pytest.mark.parametrize("per_source", [0, -1])
def test_per_source_below_one_is_refused(tmp_path, per_source):
    with pytest.raises(ValueError, match="per_source"):
        _small_set(tmp_path / "set", per_source=per_source)
    assert not (tmp_path / "set").exists()
