"""tools/check-wheels: its Dockerfile and lock parsing, without the network.

PyPI is asked only by query_pypi(); every test here gives the check the set of pins
that have binary wheels instead (check_dockerfile's has_wheel, or --wheel-index).
"""

import importlib.machinery
import importlib.util
import os
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tools", "check-wheels")

# Found by `make check-wheels` (November 2026): PyPI has no wheel CPython 3.10 on
# manylinux x86_64 can use for these pins, so both Dockerfiles must build them.
KNOWN_SOURCE_ONLY = {"pyfarmhash==0.3.2", "google-apitools==0.5.31", "kfp==2.5.0",
                     "kfp-server-api==2.0.5", "rouge-score==0.1.2"}


def _load():
    loader = importlib.machinery.SourceFileLoader("check_wheels", SCRIPT)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("check_wheels", loader))
    sys.modules["check_wheels"] = module  # dataclasses look their module up while the class is made
    loader.exec_module(module)
    return module


cw = _load()

LOCK = "six==1.17.0\nfoo-bar==1.0  # source only\n"
HAS_WHEEL = {("six", "1.17.0")}
BUILDER = """\
FROM python:3.10.13-slim-bookworm AS wheels
RUN apt-get update && apt-get install -y --no-install-recommends build-essential
RUN python -m pip wheel --no-deps --no-binary :all: --wheel-dir /wheels {pins}
"""
FINAL = """\
FROM python:3.10.13-slim-bookworm
WORKDIR /opt/app
COPY requirements.lock ./
{transfer}
RUN {mount}python -m pip install --no-deps -r requirements.lock {options}
"""


def _check(tmp_path, dockerfile, lock=LOCK, has_wheel=HAS_WHEEL):
    (tmp_path / "requirements.lock").write_text(lock)
    (tmp_path / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    return cw.check_dockerfile(str(tmp_path / "Dockerfile"), str(tmp_path), lambda pin: pin.key in has_wheel)


def _dockerfile(pins="foo-bar==1.0", transfer="COPY --from=wheels /wheels /wheels", mount="",
                options="--only-binary=:all: --find-links /wheels"):
    return BUILDER.format(pins=pins) + FINAL.format(transfer=transfer, mount=mount, options=options)


# Synthetic Dockerfiles -----------------------------------------------------------------------

@pytest.mark.parametrize("dockerfile", [
    _dockerfile(),
    _dockerfile(transfer="COPY --from=wheels /wheels/*.whl /tmp/w/", options="--only-binary=:all: -f /tmp/w"),
    _dockerfile(transfer="COPY --from=0 / /builder", options="--only-binary=:all: --find-links=/builder/wheels"),
    _dockerfile(transfer="", mount="--mount=type=bind,from=wheels,source=/wheels,target=/wheels "),
    _dockerfile(transfer="", mount="--mount=type=bind,from=wheels,source=/wheels,target=w ",
                options="--only-binary :all: --find-links w"),
], ids=["copy", "copy-glob", "copy-root-by-index", "mount", "mount-relative"])
def test_a_pin_built_in_the_builder_stage_passes(tmp_path, dockerfile):
    result = _check(tmp_path, dockerfile)
    assert result.problems == []
    assert [str(p) for p in result.binary] == ["six==1.17.0"]
    assert [(str(p), b.stage.name) for p, b in result.built] == [("foo-bar==1.0", "wheels")]
    assert result.summary() == ("Dockerfile: 2 pins (requirements.lock): 1 binary wheels, "
                                "1 built in the builder stage (foo-bar==1.0); ok")


def test_the_lock_pins_name_spelled_differently_still_matches(tmp_path):
    result = _check(tmp_path, _dockerfile(pins="Foo_Bar==1.0"))
    assert result.problems == [] and len(result.built) == 1


@pytest.mark.parametrize("pins, expected, more", [
    ("other==2.0", "; no builder stage runs 'pip wheel' for it", []),
    ("foo-bar==0.9", "; the builder builds another version (foo-bar==0.9 in stage 'wheels')",
     ["Dockerfile:3: builder stage 'wheels' uses foo-bar==0.9 but requirements.lock pins foo-bar==1.0"]),
])
def test_a_pin_missing_from_the_builder_is_a_problem(tmp_path, pins, expected, more):
    result = _check(tmp_path, _dockerfile(pins=pins))
    assert result.problems[1:] == more
    problem = result.problems[0]
    assert problem.startswith("Dockerfile: foo-bar==1.0 (requirements.lock): PyPI has no wheel for CPython 3.10")
    assert problem.endswith(expected)
    assert f"1 neither; {1 + len(more)} problem(s)" in result.summary()


@pytest.mark.parametrize("transfer, mount, options, expected", [
    ("", "", "--only-binary=:all: --find-links /wheels", "neither copies nor mounts that directory"),
    ("COPY --from=wheels /elsewhere /wheels", "", "--only-binary=:all: --find-links /wheels",
     "neither copies nor mounts that directory"),
    ("", "--mount=type=cache,target=/wheels ", "--only-binary=:all: --find-links /wheels",
     "neither copies nor mounts that directory"),
    ("COPY --from=wheels /wheels /wheels", "", "--only-binary=:all:", "does not --find-links it there"),
    ("COPY --from=wheels /wheels /wheels", "", "--only-binary=:all: --find-links /tmp",
     "does not --find-links it there"),
], ids=["nothing", "wrong-source", "cache-mount", "no-find-links", "other-find-links"])
def test_builder_output_not_reaching_the_install_is_a_problem(tmp_path, transfer, mount, options, expected):
    result = _check(tmp_path, _dockerfile(transfer=transfer, mount=mount, options=options))
    assert len(result.problems) == 1, result.problems
    assert result.problems[0].startswith("Dockerfile: foo-bar==1.0 (requirements.lock): PyPI has no wheel")
    assert expected in result.problems[0]
    assert result.built == []


def test_an_install_that_may_compile_is_a_problem(tmp_path):
    result = _check(tmp_path, _dockerfile(options="--find-links /wheels"))
    assert result.problems == ["Dockerfile:8: the install of requirements.lock lacks --only-binary=:all:, "
                               "so pip may compile a pin from source in that stage instead of failing"]


def test_compiling_in_the_installing_stage_is_not_a_builder_stage(tmp_path):
    dockerfile = FINAL.format(
        transfer="RUN python -m pip wheel --no-deps --wheel-dir /wheels foo-bar==1.0",
        mount="", options="--only-binary=:all: --find-links /wheels")
    result = _check(tmp_path, dockerfile)
    assert len(result.problems) == 1
    assert "compiled in the stage that installs requirements.lock, not in a builder stage" in result.problems[0]


def test_a_builder_without_no_deps_is_a_problem(tmp_path):
    result = _check(tmp_path, _dockerfile().replace("wheel --no-deps", "wheel"))
    assert len(result.problems) == 1 and "without --no-deps" in result.problems[0]


def test_builder_build_tools_must_match_the_lock(tmp_path):
    dockerfile = _dockerfile().replace("RUN python -m pip wheel",
                                       "RUN pip install six==1.16.0 && python -m pip wheel")
    result = _check(tmp_path, dockerfile)
    assert result.problems == ["Dockerfile:3: builder stage 'wheels' uses six==1.16.0 "
                               "but requirements.lock pins six==1.17.0"]


def test_a_lock_line_that_is_not_an_exact_pin_is_a_problem(tmp_path):
    result = _check(tmp_path, _dockerfile(), lock=LOCK + "requests>=2\n")
    assert result.problems == ["Dockerfile: requirements.lock:3: 'requests>=2' is not an exact name==version pin"]


def test_an_image_installing_no_lock_is_a_problem(tmp_path):
    result = _check(tmp_path, "FROM python:3.10.13-slim-bookworm\nRUN pip install --no-deps six==1.17.0\n")
    assert result.problems == ["Dockerfile: no 'pip install -r LOCK' found; the image installs no lock file"]


def test_a_lock_the_build_context_does_not_provide_is_a_problem(tmp_path):
    dockerfile = _dockerfile().replace("COPY requirements.lock ./\n", "")
    result = _check(tmp_path, dockerfile)
    assert len(result.problems) == 2
    assert "installs 'requirements.lock' but no COPY from the build context puts it there" in result.problems[0]


def test_parsing_details():
    stages = cw.parse_dockerfile(textwrap.dedent("""\
        # syntax=docker/dockerfile:1
        ARG X=1
        from python:3.10.13-slim-bookworm as build
        ENV PIP_NO_CACHE_DIR=1 \\
            # a comment inside a continuation
            OTHER=2
        RUN set -e; PIP_X=1 python3.10 -I -m pip --no-input wheel -w out a==1 'b[x]==2' \\
              && pip3 install --no-deps -rreq.txt c==3 > /dev/null || true
        FROM build
        WORKDIR /w
        RUN ["python", "-m", "pip", "install", "-r", "r.txt"]
    """))
    assert [(s.name, s.base) for s in stages] == [("build", "python:3.10.13-slim-bookworm"), (None, "build")]
    first, second = stages[0].pip_commands()
    assert (first.sub, first.values("-w"), [str(p) for p in first.pins()]) == ("wheel", ["out"], ["a==1", "b==2"])
    assert first.env == {"PIP_NO_CACHE_DIR": "1", "OTHER": "2", "PIP_X": "1"}
    assert first.words[:first.prog_len] == ["python3.10", "-I", "-m", "pip"]
    assert first.has("--no-input") and first.workdir is None
    assert (second.sub, second.values("-r"), second.positionals) == ("install", ["req.txt"], ["c==3"])
    (third,) = stages[1].pip_commands()
    assert (third.values("-r"), third.workdir, third.env["OTHER"]) == (["r.txt"], "/w", "2")


def test_platforms_for_a_glibc():
    assert cw.platforms("2.17")[:2] == ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    assert cw.platforms("2.17")[-1] == "manylinux1_x86_64"
    assert cw.platforms()[0] == "manylinux_2_28_x86_64"
    assert "manylinux_2_29_x86_64" not in cw.platforms()


def test_the_command_line_takes_a_wheel_index_and_asks_no_one(tmp_path, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise AssertionError("PyPI asked")
    monkeypatch.setattr(cw, "query_pypi", no_network)
    (tmp_path / "requirements.lock").write_text(LOCK)
    (tmp_path / "Dockerfile").write_text(_dockerfile())
    index = tmp_path / "index.txt"
    index.write_text("six==1.17.0\n")
    assert cw.main(["--context", str(tmp_path), "--wheel-index", str(index), "Dockerfile"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("1 built in the builder stage (foo-bar==1.0); ok")

    (tmp_path / "Dockerfile").write_text(_dockerfile(pins="other==2.0"))
    assert cw.main(["--context", str(tmp_path), "--wheel-index", str(index), "Dockerfile"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("Dockerfile: foo-bar==1.0 (requirements.lock): PyPI has no wheel")
    assert out[2].endswith("1 neither; 1 problem(s)")


# The real Dockerfiles ----------------------------------------------------------------------

@pytest.mark.parametrize("name, locks", [
    ("Dockerfile", ["requirements.lock"]),
    ("Dockerfile.gpu", ["requirements.lock", "requirements-gpu.lock"]),
])
def test_the_real_dockerfiles_build_every_pin_they_must(name, locks, tmp_path):
    path = os.path.join(REPO, name)
    # Every pin has a wheel: what the builder stages build is then all that is left to check.
    everything = cw.check_dockerfile(path, REPO, lambda pin: True)
    assert everything.problems == [] and everything.locks == locks
    lock_pins = {str(p) for p in everything.pins}

    stages = cw.parse_dockerfile(open(path).read())
    builders = [(s, c) for s in stages for c in s.pip_commands() if c.sub == "wheel"]
    assert builders, f"{name} has no builder stage"
    built = {str(p) for _, c in builders for p in c.pins()}
    assert built <= lock_pins, f"{name} builds pins the locks do not have: {built - lock_pins}"
    assert KNOWN_SOURCE_ONLY & lock_pins <= built, "a pin PyPI has no wheel for is not built"
    assert all(s.index < len(stages) - 1 for s, _ in builders), "the builder is not a stage of its own"

    # Those pins without wheels: each is built in the builder stage and reaches the install.
    result = cw.check_dockerfile(path, REPO, lambda pin: str(pin) not in built)
    assert result.problems == []
    assert {str(p) for p, _ in result.built} == built
    assert len(result.binary) + len(result.built) == len(result.pins) == len(lock_pins)

    # A pin dropped from the builder stage is caught.
    dropped = sorted(built)[0]
    text = open(path).read()
    assert text.count(f" {dropped}") == 1
    for lock in locks:
        (tmp_path / lock).write_text(open(os.path.join(REPO, lock)).read())
    (tmp_path / name).write_text(text.replace(f" {dropped}", ""))
    result = cw.check_dockerfile(str(tmp_path / name), str(tmp_path), lambda pin: str(pin) not in built)
    assert len(result.problems) == 1
    assert result.problems[0].startswith(f"{name}: {dropped} (requirements.lock): PyPI has no wheel")


def test_the_real_dockerfiles_keep_what_the_images_need():
    for name in ("Dockerfile", "Dockerfile.gpu"):
        text = open(os.path.join(REPO, name)).read()
        final = text[text.rindex("\nFROM "):]
        assert "--only-binary=:all:" in final and "--no-deps -r requirements.lock" in final
        assert "ENV TF_USE_LEGACY_KERAS=1" in final and "USER 10001" in final
        assert 'python -c "import fakeface.components.trainer.training' in final
        assert "build-essential" not in final and "pip wheel" not in final
