"""An environment with fakeface installed as the pipeline image installs it.

`fakeface run-compiled` runs each task in this environment rather than in
the checkout, so that a task only finds what the image would have:

* the package is built as a wheel from exactly what the Dockerfile COPYs into
  its build folder, and installed from that wheel, not in editable mode: a
  module the Dockerfile does not copy, or a data file setup.py does not ship,
  is missing here as it would be in the image;
* the locked dependencies are those of the running interpreter, installed
  from the same requirements.lock the Dockerfile installs;
* the working directory is a fresh folder outside the checkout, and nothing
  from the caller's environment but PATH's system part reaches the task
  except the Dockerfile's own ENV settings.

What differs from the image: the base operating system and Python build,
and the images themselves (every task runs here, whichever image the spec
names; the GPU image's CUDA libraries are not needed on a CPU).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import venv
import zipfile
from typing import Dict, List, Tuple


class ImageEnvError(RuntimeError):
    """The environment could not be built; the message says what failed."""


@dataclasses.dataclass(frozen=True)
class ImageEnv:
    root: str  # the virtualenv
    env: Dict[str, str]  # the environment variables a task starts with

    @property
    def bin_dir(self) -> str:
        return os.path.join(self.root, "bin")


def _final_stage(dockerfile: str) -> List[str]:
    """The instructions of the Dockerfile's last stage, continuation lines joined."""
    with open(dockerfile, encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    starts = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    if not starts:
        raise ImageEnvError(f"{dockerfile}: no FROM instruction")
    return lines[starts[-1]:]


def dockerfile_copies(dockerfile: str) -> List[str]:
    """The build-context paths the final stage COPYs (not those copied from other stages)."""
    sources: List[str] = []
    for line in _final_stage(dockerfile):
        words = shlex.split(line)
        if words[0].upper() != "COPY" or any(w.startswith("--from") for w in words[1:]):
            continue
        sources.extend(w for w in words[1:-1] if not w.startswith("--"))
    return sources


def dockerfile_env(dockerfile: str) -> Dict[str, str]:
    """The final stage's ENV settings (the KEY=VALUE form)."""
    settings: Dict[str, str] = {}
    for line in _final_stage(dockerfile):
        words = shlex.split(line)
        if words[0].upper() == "ENV":
            for word in words[1:]:
                key, sep, value = word.partition("=")
                if not sep:
                    raise ImageEnvError(f"{dockerfile}: write ENV as KEY=VALUE, not {line!r}")
                settings[key] = value
    return settings


def _build_wheel(project_dir: str, dockerfile: str, out_dir: str) -> str:
    """Builds the project's wheel from a copy of what the Dockerfile COPYs; returns its path."""
    context = os.path.join(out_dir, "context")
    os.makedirs(context)
    for source in dockerfile_copies(dockerfile):
        for path in glob.glob(os.path.join(project_dir, source)) or [os.path.join(project_dir, source)]:
            if not os.path.exists(path):
                raise ImageEnvError(f"{dockerfile}: COPY {source}: not found in {project_dir}")
            target = os.path.join(context, os.path.relpath(path, project_dir))
            if os.path.isdir(path):
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(path, target)
    wheels = os.path.join(out_dir, "wheels")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "--wheel-dir", wheels, context], "build the fakeface wheel")
    built = glob.glob(os.path.join(wheels, "*.whl"))
    if len(built) != 1:
        raise ImageEnvError(f"expected one wheel from {context}, found {built}")
    return built[0]


def _wheel_digest(wheel: str) -> str:
    """A digest of the wheel's contents, independent of the timestamps inside the zip."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            digest.update(name.encode() + b"\0" + archive.read(name) + b"\0")
    return digest.hexdigest()[:16]


def _run(command: List[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise ImageEnvError(f"could not {what}: {' '.join(command)}\n{result.stderr[-2000:]}")


def _create(root: str, wheel: str) -> None:
    tmp = root + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    venv.EnvBuilder(with_pip=False, symlinks=True).create(tmp)
    purelib = sysconfig.get_paths(vars={"base": tmp, "platbase": tmp})["purelib"]
    # The locked dependencies of this interpreter, as a plain path entry: its
    # own .pth files (among them the editable install of the checkout) are
    # processed only for site directories, so they do not apply here.
    with open(os.path.join(purelib, "locked-dependencies.pth"), "w", encoding="utf-8") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", os.path.join(tmp, "bin", "python"), "install",
          "--quiet", "--no-deps", "--no-index", wheel], "install the fakeface wheel")
    os.replace(tmp, root)


def build(project_dir: str, cache_dir: str, dockerfile_name: str = "Dockerfile") -> Tuple[ImageEnv, bool]:
    """The environment for the project's current code; (env, whether it was built now).

    Environments are kept in `cache_dir` by the digest of the wheel, so an
    unchanged project reuses its environment.
    """
    dockerfile = os.path.join(project_dir, dockerfile_name)
    if not os.path.isfile(dockerfile):
        raise ImageEnvError(f"{dockerfile}: not found; run-compiled builds the image's environment "
                            "from a fakeface checkout (--project)")
    os.makedirs(cache_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".build-") as tmp:
        wheel = _build_wheel(project_dir, dockerfile, tmp)
        root = os.path.join(cache_dir, f"env-{_wheel_digest(wheel)}")
        built = not os.path.isdir(root)
        if built:
            _create(root, wheel)
    env = {"PATH": os.pathsep.join([os.path.join(root, "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
           "LANG": "C.UTF-8"}
    env.update(dockerfile_env(dockerfile))
    return ImageEnv(root=root, env=env), built
