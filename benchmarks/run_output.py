"""`fakeface run` as a user sees it: how soon a bad dataset is reported, and how many lines a run prints.

    python benchmarks/run_output.py [--repeats N] [--workdir DIR] [--skip-run]

  early error  `fakeface run --catalog C`, where C names an empty dataset
               folder: wall time from starting the command to its exit (2),
               N times (default 5), as a subprocess from a fresh interpreter.
  default run  `fakeface sample-data` then `fakeface run` with the default
               config in a fresh folder (what `make run` does after the
               environment is built): the lines printed on stdout and stderr,
               the exit code, and the log file's length.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

FAKEFACE = [sys.executable, "-m", "fakeface.cli"]


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def early_error(workdir: str, repeats: int) -> None:
    data = os.path.join(workdir, "early")
    os.makedirs(os.path.join(data, "real"), exist_ok=True)
    os.makedirs(os.path.join(data, "fake"), exist_ok=True)
    with open(os.path.join(data, "real", "a.jpg"), "wb") as f:
        f.write(b"not looked at")
    catalog = os.path.join(data, "catalog.yaml")
    with open(catalog, "w", encoding="utf-8") as f:
        f.write("datasets:\n"
                "  - {name: R, location: real, label: real, generator: camera, shot: close-up}\n"
                "  - {name: F, location: fake, label: fake, generator: G, shot: close-up}\n")
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(FAKEFACE + ["run", "--catalog", catalog], cwd=workdir, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
    print(f"early error ({load()}): exit {done.returncode}: {done.stderr.strip()}")
    print(f"  {repeats} runs: median {statistics.median(times):.2f} s, max {max(times):.2f} s")


def default_run(workdir: str) -> None:
    folder = os.path.join(workdir, "default")
    os.makedirs(folder, exist_ok=True)
    subprocess.run(FAKEFACE + ["sample-data", "fakeface_runs/sample_data"], cwd=folder, check=True,
                   capture_output=True)
    started = time.perf_counter()
    done = subprocess.run(FAKEFACE + ["run"], cwd=folder, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    out, err = done.stdout.splitlines(), done.stderr.splitlines()
    logs = os.path.join(folder, "fakeface_runs", "logs", "fakeface")
    log_lines = sum(sum(1 for _ in open(os.path.join(logs, name), encoding="utf-8", errors="replace"))
                    for name in os.listdir(logs)) if os.path.isdir(logs) else 0
    print(f"default run ({load()} at the end): exit {done.returncode} in {elapsed:.0f} s; "
          f"{len(out) + len(err)} lines printed ({len(out)} stdout, {len(err)} stderr); "
          f"log file {log_lines} lines")
    for line in out:
        print(f"  | {line}")
    for line in err:
        print(f"  ! {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--skip-run", action="store_true", help="only the early error")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="fakeface-run-output-")
    try:
        early_error(workdir, args.repeats)
        if not args.skip_run:
            default_run(workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
