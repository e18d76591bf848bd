"""The shortcut guard per group, per dataset and pooled (fakeface/shortcuts.py), on files made here."""

import dataclasses
import functools
import io

import pytest
from PIL import Image

from fakeface import catalog as catalog_lib
from fakeface import features, file_attributes, sample_data, shortcuts
from fakeface.components.image_example_gen import inspection

WARN_AT = 0.9  # ingest.shortcut_warning_accuracy's default
PER_DATASET = 12
SIZE = 64


def _exif():
    exif = Image.Exif()
    exif[0x0110] = "Pixel 7"
    return exif.tobytes()


# How a dataset's files were saved.
SAVED_AS = {
    "jpeg90": dict(format="JPEG", quality=90),
    "jpeg98": dict(format="JPEG", quality=98, subsampling="4:4:4"),
    "png": dict(format="PNG"),
    "camera": dict(format="JPEG", quality=90, exif=_exif()),
    "png+exif": dict(format="PNG", exif=_exif()),
    "jpeg90+exif": dict(format="JPEG", quality=90, exif=_exif()),
}


@functools.lru_cache(maxsize=None)
def _picture(dataset, index):
    """A distinct picture per dataset and index, all from one source: the pictures carry no label.

    Bytes per pixel follow the pictures' detail, and the sample sources differ in it
    by design, so a clean group must not mix them.
    """
    return Image.fromarray(sample_data.render_image(sample_data.SOURCES_BY_NAME["FFHQ_Orig"], index, SIZE,
                                                    seed=sum(map(ord, dataset))))


def _files(dataset, saved_as, count=PER_DATASET):
    """`count` pictures of a dataset, encoded as `saved_as` says."""
    files = []
    for index in range(count):
        buffer = io.BytesIO()
        _picture(dataset, index).save(buffer, **SAVED_AS[saved_as])
        files.append(buffer.getvalue())
    return files


def _dataset(name, label, group=None):
    return catalog_lib.Dataset(name=name, location=f"/data/{name}", label=label, generator="g",
                               shot=features.CLOSE_UP, group=group)


def _catalog(spec):
    """spec: (name, label, group, saved_as) per dataset -> (datasets, files by dataset)."""
    datasets = [_dataset(name, label, group) for name, label, group, _ in spec]
    files = {name: _files(name, saved_as) for name, _, _, saved_as in spec}
    return datasets, files


def _guard(datasets, files, transform=lambda data: data):
    observations = [(name, file_attributes.read(transform(data))) for name, items in files.items() for data in items]
    return shortcuts.guard(shortcuts.count(observations), datasets, WARN_AT)


R, F = features.REAL, features.FAKE
CLEAN_GROUPS = [
    (f"{kind}_{g}", label, f"clean-{g}", "jpeg90")
    for g in range(4) for kind, label in (("Real", R), ("Fake", F))
]
CONFOUNDED_GROUP = [("Photos_PNG", R, "confounded", "png"), ("GAN_JPEG98", F, "confounded", "jpeg98")]


@pytest.fixture(scope="module")
def mixed():
    return _catalog(CLEAN_GROUPS + CONFOUNDED_GROUP)


def test_a_confounded_group_among_clean_ones_warns_about_exactly_that_group(mixed):
    datasets, files = mixed
    result = _guard(datasets, files)
    assert result.warnings
    assert {(w.figure.scope.kind, w.figure.scope.name) for w in result.warnings} == {(shortcuts.GROUP, "confounded")}
    by_attribute = {w.figure.attribute: w for w in result.warnings}
    assert {"format", "jpeg_quality", "chroma_subsampling", shortcuts.CLASSIFIER} <= set(by_attribute)
    message = by_attribute["format"].message
    assert message.startswith("SHORTCUT in group confounded (real Photos_PNG; fake GAN_JPEG98): format alone "
                              "tells real from fake with balanced accuracy 1.00")
    assert "(real: PNG 12; fake: JPEG 12)" in message and message.endswith("Remedy: ingest.reencode_jpeg_quality.")
    # Pooled, the clean groups dilute it below the threshold: what the pooled guard alone missed.
    pooled = {f.attribute: f for f in result.figures if f.scope.kind == shortcuts.POOLED}
    assert pooled["format"].balanced_accuracy < WARN_AT


def test_the_same_mix_without_the_confounded_group_warns_about_nothing():
    datasets, files = _catalog(CLEAN_GROUPS)
    result = _guard(datasets, files)
    assert result.warnings == ()
    kinds = {f.scope.kind for f in result.figures}
    assert kinds == {shortcuts.GROUP, shortcuts.POOLED}
    assert len([f for f in result.figures if f.attribute == shortcuts.CLASSIFIER]) == 5  # 4 groups + pooled


def test_after_re_encoding_the_same_catalog_passes(mixed):
    datasets, files = mixed
    result = _guard(datasets, files, transform=lambda data: inspection.reencode_jpeg(data, 90))
    assert result.warnings == ()


def test_a_metadata_confound_asks_for_stripping_and_passes_after_it():
    datasets, files = _catalog(CLEAN_GROUPS + [("Phone_Photos", R, "phones", "camera"),
                                               ("Phone_Fakes", F, "phones", "jpeg90")])
    warnings = _guard(datasets, files).warnings
    assert {(w.figure.scope.name, w.figure.attribute) for w in warnings} == {
        ("phones", "exif"), ("phones", shortcuts.CLASSIFIER)}
    for warning in warnings:
        assert warning.figure.remedies == (shortcuts.STRIP,)
        assert warning.message.endswith("Remedy: ingest.strip_metadata.")
    assert _guard(datasets, files, transform=file_attributes.strip_metadata).warnings == ()


def test_a_dataset_outside_any_group_is_measured_against_the_other_label():
    datasets, files = _catalog(CLEAN_GROUPS + [("Loose_Fakes", F, None, "png")])
    warnings = _guard(datasets, files).warnings
    assert {(w.figure.scope.kind, w.figure.scope.name) for w in warnings} == {(shortcuts.DATASET, "Loose_Fakes")}
    format_warning = next(w for w in warnings if w.figure.attribute == "format")
    assert format_warning.message.startswith(
        "SHORTCUT in dataset Loose_Fakes against every real dataset (Real_0, Real_1, Real_2, Real_3): format alone")


def test_the_classifier_finds_a_combination_no_single_attribute_shows():
    # Real: PNG with EXIF or JPEG without; fake: the other way round.
    spec = CLEAN_GROUPS + [("Real_A", R, "xor", "png+exif"), ("Real_B", R, "xor", "jpeg90"),
                           ("Fake_A", F, "xor", "png"), ("Fake_B", F, "xor", "jpeg90+exif")]
    datasets, files = _catalog(spec)
    result = _guard(datasets, files)
    xor = {f.attribute: f for f in result.figures if f.scope.name == "xor"}
    assert max(xor[a].balanced_accuracy for a in shortcuts.ATTRIBUTES) < WARN_AT
    assert xor[shortcuts.CLASSIFIER].balanced_accuracy >= WARN_AT
    (warning,) = result.warnings
    assert warning.figure is xor[shortcuts.CLASSIFIER]
    # PNG against JPEG shows in format and in bytes per pixel alike; the tree may take either.
    assert "exif" in warning.figure.used and {"format", "bytes_per_pixel"} & set(warning.figure.used)
    assert "Remedy: ingest.reencode_jpeg_quality and ingest.strip_metadata." in warning.message


def test_a_fully_confounded_catalog_still_warns_pooled():
    datasets, files = _catalog([("Real_0", R, None, "png"), ("Fake_0", F, None, "jpeg90")])
    warned = {(w.figure.scope.kind, w.figure.attribute) for w in _guard(datasets, files).warnings}
    assert (shortcuts.POOLED, "format") in warned and (shortcuts.DATASET, "format") in warned


def test_scopes_follow_the_groups():
    datasets = [_dataset("A_real", R, "a"), _dataset("A_fake", F, "a"), _dataset("B_fake", F, "a"),
                _dataset("Loose_real", R), _dataset("Loose_fake", F)]
    assert shortcuts.scopes(datasets) == [
        shortcuts.Scope(shortcuts.GROUP, "a", ("A_real",), ("A_fake", "B_fake")),
        shortcuts.Scope(shortcuts.DATASET, "Loose_real", ("Loose_real",), ("A_fake", "B_fake", "Loose_fake")),
        shortcuts.Scope(shortcuts.DATASET, "Loose_fake", ("A_real", "Loose_real"), ("Loose_fake",)),
        shortcuts.Scope(shortcuts.POOLED, "all", ("A_real", "Loose_real"), ("A_fake", "B_fake", "Loose_fake")),
    ]


@pytest.mark.parametrize("bytes_per_pixel, octave", [(0.3, "0.25-0.5"), (0.5, "0.5-1"), (1.0, "1-2"),
                                                     (2.9, "2-4"), (0.07, "0.0625-0.125")])
def test_bytes_per_pixel_are_compared_by_octave(bytes_per_pixel, octave):
    attributes = file_attributes.read(_files("X", "jpeg90", count=1)[0])
    key = shortcuts.profile(dataclasses.replace(attributes, bytes_per_pixel=bytes_per_pixel))[
        shortcuts.ATTRIBUTES.index("bytes_per_pixel")]
    assert shortcuts.label("bytes_per_pixel", key) == octave


def test_balanced_accuracy_of_one_attribute():
    assert shortcuts.balanced_accuracy({"PNG": 10}, {"JPEG": 4}) == 1.0
    assert shortcuts.balanced_accuracy({"PNG": 5, "JPEG": 5}, {"PNG": 2, "JPEG": 2}) == 0.5
    assert shortcuts.balanced_accuracy({"PNG": 3, "JPEG": 1}, {"JPEG": 4}) == pytest.approx(0.875)
    assert shortcuts.balanced_accuracy({}, {"JPEG": 4}) == 0.5
