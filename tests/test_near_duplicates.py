"""Near-duplicates (fakeface/near_duplicates.py): the hash, the search, the clusters, label conflicts."""

import dataclasses
import io
import itertools
import random

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fakeface import features, near_duplicates, sample_data
from fakeface.near_duplicates import FileRecord

MAX_BITS = 2  # ingest.near_duplicate_bits' default


def _clustered_hashes(seed, centres=200):
    """Hashes in small clumps: a few bits flipped off random centres, as copies of a picture would be."""
    rng = np.random.default_rng(seed)
    values = []
    for centre in rng.integers(0, 2 ** 63, centres, dtype=np.uint64):
        for _ in range(rng.integers(1, 4)):
            value = int(centre)
            for bit in rng.choice(64, rng.integers(0, 8), replace=False):
                value ^= 1 << int(bit)
            values.append(value)
    return np.unique(np.array(values, dtype=np.uint64))


@pytest.mark.parametrize("max_bits", [0, 1, 2, 3, 4, 5, 8])
def test_the_search_finds_exactly_the_pairs_a_comparison_of_all_pairs_finds(max_bits):
    hashes = _clustered_hashes(seed=max_bits)
    left, right = near_duplicates.near_pairs(hashes, max_bits)
    found = set(zip(left.tolist(), right.tolist()))
    assert len(found) == len(left)
    expected = {(i, j) for i, j in itertools.combinations(range(len(hashes)), 2)
                if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= max_bits}
    assert found == expected
    assert max_bits == 0 or expected  # the clumps do hold pairs to find


def test_clusters_are_chains_named_by_their_smallest_hash():
    a = "0000000000000000"
    b = "0000000000000007"  # 3 bits from a
    c = "000000000000003f"  # 3 bits from b, 6 from a: joined through b
    far = "ffffffffffff0000"
    ids = near_duplicates.cluster_ids([c, far, a, b, far], max_bits=3)
    assert ids == [a, far, a, a, far]
    assert near_duplicates.cluster_ids([c, far, a, b, far], max_bits=2) == [c, far, a, b, far]
    assert near_duplicates.cluster_ids([b, b], max_bits=0) == [b, b]
    assert near_duplicates.cluster_ids([], max_bits=3) == []


def test_max_bits_out_of_range_is_refused():
    with pytest.raises(ValueError, match="max_bits"):
        near_duplicates.cluster_ids(["0" * 16], max_bits=64)


def _decode(data):
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def _encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pictures():
    """Twenty distinct sample pictures at 128 px, as the files ingestion reads."""
    return [sample_data.encode_jpeg(sample_data.render_image(source, index, 128, seed=21))
            for index in range(3) for source in sample_data.SOURCES][:20]


def test_re_encoded_and_resized_copies_join_their_original_and_distinct_pictures_stay_apart(pictures):
    hashes = [near_duplicates.perceptual_hash(_decode(p)) for p in pictures]
    for data in pictures:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        copies = [_encode(image, "JPEG", quality=70), _encode(image, "JPEG", quality=95), _encode(image, "PNG"),
                  _encode(image.resize((64, 64), Image.LANCZOS), "JPEG", quality=90),
                  _encode(image.resize((96, 96), Image.LANCZOS), "JPEG", quality=90)]
        hashes.extend(near_duplicates.perceptual_hash(_decode(copy)) for copy in copies)
    clusters = near_duplicates.cluster_ids(hashes, MAX_BITS)
    originals = clusters[:len(pictures)]
    joined = [clusters[len(pictures) + 5 * i + k] == originals[i] for i in range(len(pictures)) for k in range(5)]
    assert sum(joined) / len(joined) >= 0.98  # the aim for recall
    assert len(set(originals)) == len(pictures)


def test_the_hash_takes_grayscale_and_refuses_what_is_not_uint8_pixels():
    gray = np.asarray(Image.fromarray(sample_data.render_image(sample_data.SOURCES[2], 0, 48, seed=1)).convert("L"))
    replicated = np.repeat(gray[..., None], 3, axis=2)
    expected = near_duplicates.perceptual_hash(replicated)
    assert near_duplicates.perceptual_hash(gray) == expected
    assert near_duplicates.perceptual_hash(gray[..., None]) == expected
    assert near_duplicates.perceptual_hash(np.full((9, 9, 3), 77, np.uint8)) == "0" * 16  # flat: no structure
    for bad in (gray.astype(np.float32), np.zeros((0, 5, 3), np.uint8), np.zeros((5, 5, 2), np.uint8)):
        with pytest.raises(ValueError, match="uint8 pixels"):
            near_duplicates.perceptual_hash(bad)


def _record(dataset, path, label, content=None, picture="0000000000000000"):
    """A file's record; its cluster is the one ingestion would give it among the test's pictures."""
    return FileRecord(content_hash=content or f"{dataset}/{path}", perceptual_hash=picture, cluster_id="",
                      label=label, dataset=dataset, path=path)


def _conflicts(records):
    clusters = near_duplicates.cluster_ids([r.perceptual_hash for r in records], MAX_BITS)
    clustered = [dataclasses.replace(r, cluster_id=c) for r, c in zip(records, clusters)]
    return near_duplicates.label_conflicts(clustered, MAX_BITS)


def _reasons(conflict):
    return {record.name: reason for record, reason in conflict.reasons()}


def test_byte_identical_files_under_both_labels_are_a_conflict_whatever_the_dataset_order():
    records = [_record("Zeta_Fakes", "x.png", features.FAKE, content="same", picture="00000000000000f0"),
               _record("Alpha_Real", "a.png", features.REAL, content="same", picture="00000000000000f0"),
               _record("Alpha_Real", "b.png", features.REAL, content="other", picture="ffff000000000000"),
               _record("Beta_Real", "b_copy.png", features.REAL, content="other", picture="ffff000000000000")]
    for ordering in (records, records[::-1]):
        (conflict,) = _conflicts(ordering)
        assert conflict.byte_identical and conflict.cluster_id == "00000000000000f0"
        assert _reasons(conflict) == {"Alpha_Real/a.png": "label conflict: byte-identical to fake Zeta_Fakes/x.png",
                                      "Zeta_Fakes/x.png": "label conflict: byte-identical to real Alpha_Real/a.png"}


def test_near_duplicates_under_both_labels_are_quarantined_and_a_chain_alone_is_not():
    records = [_record("FFHQ", "1.png", features.REAL, picture="0000000000000003"),
               _record("Collection2", "1.jpg", features.REAL, picture="0000000000000001"),
               _record("Gen1", "7.jpg", features.FAKE, picture="0000000000000000"),
               # 2 bits from FFHQ/1.png, 4 from Gen1/7.jpg: in the cluster through a real file only.
               _record("Photos", "far.jpg", features.REAL, picture="000000000000000f"),
               _record("Gen1", "8.jpg", features.FAKE, picture="f0f0f0f0f0f0f0f0")]
    assert len(set(near_duplicates.cluster_ids([r.perceptual_hash for r in records[:4]], MAX_BITS))) == 1
    random.Random(3).shuffle(records)
    (conflict,) = _conflicts(records)
    assert not conflict.byte_identical
    assert _reasons(conflict) == {
        "Collection2/1.jpg": "label conflict: the same picture (near-duplicate) as fake Gen1/7.jpg",
        "FFHQ/1.png": "label conflict: the same picture (near-duplicate) as fake Gen1/7.jpg",
        "Gen1/7.jpg": "label conflict: the same picture (near-duplicate) as real Collection2/1.jpg, FFHQ/1.png"}


def test_long_lists_of_the_other_label_are_cut_short():
    records = [_record("Real", "r.png", features.REAL)] + [
        _record("Fake", f"{i}.png", features.FAKE) for i in range(5)]
    (conflict,) = _conflicts(records)
    assert _reasons(conflict)["Real/r.png"].endswith("fake Fake/0.png, Fake/1.png, Fake/2.png and 2 more")


def test_duplicates_under_one_label_are_no_conflict():
    records = [_record("A", "1.png", features.FAKE, content="same"),
               _record("B", "1.png", features.FAKE, content="same"),
               _record("C", "2.png", features.FAKE, picture="0000000000000001")]
    assert _conflicts(records) == []
