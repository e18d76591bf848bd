"""Tests of the dataset catalog (fakeface/catalog.py)."""

import os

import pytest
import yaml

from fakeface import catalog, features

_DROP = object()


def _entry(**changes):
    entry = {"name": "FFHQ_Orig", "location": "ffhq", "label": "real",
             "generator": "camera", "shot": "close-up"}
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not _DROP}


_FAKE = {"name": "PGGAN", "location": "pggan", "label": "fake", "generator": "PGGAN", "shot": "close-up"}


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
    return str(path)


def test_valid_catalog_parses_and_resolves_locations(tmp_path, monkeypatch):
    catalog_path = _write(tmp_path / "catalogs" / "main.yaml", {"datasets": [
        _entry(location="ffhq/close-up", limit=100),
        _entry(name="FFHQ_Wide", location="../shared/ffhq-wide/", shot="wide"),
        {"name": "Gen1", "location": "/data/gen1/*.png", "label": "fake",
         "generator": "StyleGAN2", "shot": "close-up"},
        {"name": "StyleGAN_CelebA", "location": "gs://bucket/stylegan/celeba", "label": "fake",
         "generator": "StyleGAN", "shot": "close-up"},
    ]})
    # Relative locations must follow the catalog file, not the working directory.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    loaded = catalog.load(catalog_path)

    assert loaded.path == catalog_path
    by_name = {d.name: d for d in loaded.datasets}
    assert list(by_name) == ["FFHQ_Orig", "FFHQ_Wide", "Gen1", "StyleGAN_CelebA"]
    ffhq = by_name["FFHQ_Orig"]
    assert ffhq.location == str(tmp_path / "catalogs" / "ffhq" / "close-up")
    assert (ffhq.label, ffhq.label_name, ffhq.generator, ffhq.shot, ffhq.limit) == (
        features.REAL, "real", "camera", "close-up", 100)
    assert by_name["FFHQ_Wide"].location == str(tmp_path / "shared" / "ffhq-wide")
    assert by_name["FFHQ_Wide"].shot == features.WIDE
    assert by_name["FFHQ_Wide"].limit is None
    assert by_name["Gen1"].location == "/data/gen1/*.png"
    assert by_name["Gen1"].label == features.FAKE
    assert by_name["StyleGAN_CelebA"].location == "gs://bucket/stylegan/celeba"


def test_parse_resolves_relative_locations_against_the_given_path(tmp_path):
    parsed = catalog.parse({"datasets": [_entry(location="a/b"), dict(_FAKE)]},
                           str(tmp_path / "sub" / "catalog.yaml"))
    assert parsed.datasets[0].location == str(tmp_path / "sub" / "a" / "b")
    assert parsed.datasets[1].location == str(tmp_path / "sub" / "pggan")


@pytest.mark.parametrize("location, root, is_glob", [
    ("/data/ffhq", "/data/ffhq", False),
    ("/data/ffhq/", "/data/ffhq", False),
    ("gs://bucket/ffhq/", "gs://bucket/ffhq", False),
    ("/data/celeba/img_*.jpg", "/data/celeba", True),
    ("gs://bucket/pggan/*/faces/*.png", "gs://bucket/pggan", True),
    ("/data/gen/[ab]?/x.jpg", "/data/gen", True),
])
def test_root_and_glob(location, root, is_glob):
    dataset = catalog.Dataset(name="d", location=location, label=features.REAL,
                              generator="camera", shot=features.CLOSE_UP)
    assert dataset.root == root
    assert dataset.is_glob == is_glob


def test_missing_catalog_file(tmp_path):
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(catalog.CatalogError, match="not found") as e:
        catalog.load(path)
    assert path in str(e.value)


BAD_CATALOGS = [
    ("invalid_yaml", "datasets: [\n  - name: x\n", r"not valid YAML"),
    ("empty_file", "", r"'datasets' list"),
    ("top_level_list", [_entry(), _FAKE], r"'datasets' list"),
    ("no_datasets_key", {"sets": [_entry(), _FAKE]}, r"'datasets' list"),
    ("datasets_not_a_list", {"datasets": {"FFHQ_Orig": _entry()}}, r"'datasets' list"),
    ("empty_list", {"datasets": []}, r"no datasets"),
    ("entry_not_a_mapping", {"datasets": ["FFHQ_Orig", _FAKE]}, r"expected a mapping"),
    ("unknown_key", {"datasets": [_entry(lable="real"), _FAKE]}, r"unknown keys \['lable'\]"),
    *[(f"missing_{key}", {"datasets": [_entry(**{key: _DROP}), _FAKE]}, rf"'{key}' must be a non-empty string")
      for key in ("name", "location", "label", "generator", "shot")],
    ("empty_name", {"datasets": [_entry(name=""), _FAKE]}, r"'name' must be a non-empty string"),
    ("empty_location", {"datasets": [_entry(location=""), _FAKE]}, r"'location' must be a non-empty string"),
    ("non_string_generator", {"datasets": [_entry(generator=3), _FAKE]}, r"'generator' must be a non-empty string"),
    ("bad_label", {"datasets": [_entry(label="genuine"), _FAKE]}, r"label must be one of.*'genuine'"),
    ("label_wrong_case", {"datasets": [_entry(label="Real"), _FAKE]}, r"label must be one of.*'Real'"),
    ("bad_shot", {"datasets": [_entry(shot="closeup"), _FAKE]}, r"shot must be one of.*'closeup'"),
    ("zero_limit", {"datasets": [_entry(limit=0), _FAKE]}, r"limit must be a positive integer"),
    ("negative_limit", {"datasets": [_entry(limit=-5), _FAKE]}, r"limit must be a positive integer"),
    ("boolean_limit", {"datasets": [_entry(limit=True), _FAKE]}, r"limit must be a positive integer, got True"),
    ("float_limit", {"datasets": [_entry(limit=2.5), _FAKE]}, r"limit must be a positive integer"),
    ("string_limit", {"datasets": [_entry(limit="10"), _FAKE]}, r"limit must be a positive integer"),
    ("duplicate_name", {"datasets": [_entry(), _FAKE, _entry(location="other")]}, r"'FFHQ_Orig' appears twice"),
    ("no_real_dataset", {"datasets": [_FAKE, dict(_FAKE, name="Gen1")]}, r"no real dataset"),
    ("no_fake_dataset", {"datasets": [_entry(), _entry(name="CelebA")]}, r"no fake dataset"),
    ("unknown_top_level_key", {"datasets": [_entry(), _FAKE], "experiment": {"v1": ["PGGAN"]}},
     r"unknown keys \['experiment'\]"),
    ("experiments_not_a_mapping", {"datasets": [_entry(), _FAKE], "experiments": ["PGGAN"]},
     r"experiments: expected a mapping"),
    ("experiment_not_a_list", {"datasets": [_entry(), _FAKE], "experiments": {"v1": "PGGAN"}},
     r"experiments.v1: expected a non-empty list"),
    ("experiment_empty", {"datasets": [_entry(), _FAKE], "experiments": {"v1": []}},
     r"experiments.v1: expected a non-empty list"),
    ("experiment_unknown_dataset", {"datasets": [_entry(), _FAKE], "experiments": {"v1": ["PGGAN", "FFHQ"]}},
     r"experiment 'v1': \['FFHQ'\] are not datasets of the catalog"),
    ("experiment_one_class", {"datasets": [_entry(), _FAKE], "experiments": {"v1": ["PGGAN"]}},
     r"experiment 'v1': \['PGGAN'\] must hold real and fake"),
    ("empty_group", {"datasets": [_entry(group=""), _FAKE]}, r"group must be a non-empty string, got ''"),
    ("numeric_group", {"datasets": [_entry(group=7), _FAKE]}, r"group must be a non-empty string, got 7"),
    # A misspelt group name leaves each half of a pair alone in a group of one label.
    ("one_label_group", {"datasets": [_entry(group="ffhq"), dict(_FAKE, group="FFHQ")]},
     r"group 'ffhq' holds only real datasets \(FFHQ_Orig\)"),
]


@pytest.mark.parametrize("content, reason", [c[1:] for c in BAD_CATALOGS], ids=[c[0] for c in BAD_CATALOGS])
def test_bad_catalog_is_refused_with_path_and_reason(tmp_path, content, reason):
    path = _write(tmp_path / "catalog.yaml", content)
    with pytest.raises(catalog.CatalogError, match=reason) as e:
        catalog.load(path)
    assert str(e.value).startswith(f"{path}: ")


def test_groups_are_read_and_optional(tmp_path):
    path = _write(tmp_path / "catalog.yaml", {"datasets": [
        _entry(group="ffhq"), dict(_FAKE, name="Gen1", group="ffhq"), dict(_FAKE, name="PGGAN")]})
    loaded = catalog.load(path)
    assert [d.group for d in loaded.datasets] == ["ffhq", "ffhq", None]
    assert [d["group"] for d in loaded.to_dict()["datasets"]] == ["ffhq", "ffhq", None]


def test_error_names_the_offending_entry(tmp_path):
    path = _write(tmp_path / "catalog.yaml", {"datasets": [_entry(), _FAKE, dict(_FAKE, name="Gen1", shot="far")]})
    with pytest.raises(catalog.CatalogError, match=r"datasets\[2\] \(Gen1\)"):
        catalog.load(path)



def test_experiments_name_the_datasets_they_train_on(tmp_path):
    path = _write(tmp_path / "catalog.yaml", {"datasets": [_entry(), _FAKE, dict(_FAKE, name="Gen1")],
                                              "experiments": {"close": ["FFHQ_Orig", "PGGAN"],
                                                              "all": ["FFHQ_Orig", "PGGAN", "Gen1"]}})
    loaded = catalog.load(path)
    assert loaded.experiments == {"close": ("FFHQ_Orig", "PGGAN"), "all": ("FFHQ_Orig", "PGGAN", "Gen1")}
    assert catalog.load(_write(tmp_path / "plain.yaml", {"datasets": [_entry(), _FAKE]})).experiments == {}


def _local_catalog(tmp_path, real_location, fake_location="fake"):
    (tmp_path / "fake").mkdir(exist_ok=True)
    (tmp_path / "fake" / "a.jpg").write_bytes(b"x")
    return catalog.load(_write(tmp_path / "catalog.yaml", {"datasets": [
        _entry(location=real_location), dict(_FAKE, location=fake_location)]}))


@pytest.mark.parametrize("layout, location, reason", [
    ("nothing", "real", r"dataset 'FFHQ_Orig': no folder at .*real$"),
    ("empty folder", "real", r"dataset 'FFHQ_Orig' has no files at .*real$"),
    ("only empty subfolders", "real", r"dataset 'FFHQ_Orig' has no files"),
    ("files elsewhere", "real/*.png", r"dataset 'FFHQ_Orig' has no files at .*real/\*\.png$"),
])
def test_a_missing_or_empty_local_dataset_is_named_before_any_work(tmp_path, layout, location, reason):
    if layout != "nothing":
        (tmp_path / "real").mkdir()
    if layout == "only empty subfolders":
        (tmp_path / "real" / "a" / "b").mkdir(parents=True)
    if layout == "files elsewhere":
        (tmp_path / "real" / "x.jpg").write_bytes(b"x")
    loaded = _local_catalog(tmp_path, location)
    with pytest.raises(catalog.CatalogError, match=reason) as e:
        catalog.check_local_datasets(loaded)
    assert str(e.value).startswith(f"{loaded.path}: ")


@pytest.mark.parametrize("location", ["real", "real/*.jpg", "gs://bucket/not/looked/at"])
def test_a_dataset_with_a_file_or_in_a_bucket_passes_the_local_check(tmp_path, location):
    (tmp_path / "real" / "deep" / "er").mkdir(parents=True)
    (tmp_path / "real" / "deep" / "er" / "x.jpg").write_bytes(b"x")
    (tmp_path / "real" / "y.jpg").write_bytes(b"x")
    catalog.check_local_datasets(_local_catalog(tmp_path, location))


def test_shipped_founding_catalog_matches_the_sample_data_roles():
    """The sample data stands in for these datasets, so names and roles must agree."""
    from fakeface import sample_data

    path = os.path.join(os.path.dirname(__file__), os.pardir, "catalogs", "founding.yaml")
    founding = catalog.load(path)
    assert [(d.name, d.label, d.generator, d.shot, d.group) for d in founding.datasets] == [
        (s.name, s.label, s.generator, s.shot, s.group) for s in sample_data.SOURCES]
    limits = {d.name: d.limit for d in founding.datasets if d.limit}
    assert limits == {"FFHQ_Orig": 30000, "FFHQ_Wide": 4000}
    assert founding.experiments == {name: tuple(names) for name, names in sample_data.EXPERIMENTS.items()}
