"""Local runs on a runs_root: their ids, their log files, and one at a time.

Two runs on one runs_root would both execute every step into the same
metadata store and artifact folders. A run holds an exclusive lock on
`<runs_root>/run.lock` while it works, and writes into the file who it is
(pid, host, start time), so that a second run can say who is in its way.

The lock is the operating system's (flock), not the file's existence: it goes
with the process that holds it, so a run that was killed, or a machine that
crashed, leaves no lock behind, only a file that the next run takes over.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import time
from typing import Iterator

LOCK_FILE = "run.lock"


def new_run_id() -> str:
    """A run id that sorts by start time and is safe in a file name; ML Metadata records the run under it."""
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")


def log_path(runs_root: str, pipeline_name: str, run_id: str) -> str:
    """Where `fakeface run` writes everything a run prints that is not its progress."""
    return os.path.join(os.path.abspath(runs_root), "logs", pipeline_name, f"{run_id}.log")


class RunsRootBusy(Exception):
    """Another run holds the runs_root; the message names it."""


class RunsRootUnusable(Exception):
    """The runs_root cannot be created or written; the message says why."""


def _holder(path: str) -> str:
    # The holder writes its details right after taking the lock; a reader that
    # comes in between waits a moment for them.
    for _ in range(20):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if text:
            try:
                who = json.loads(text)
                return f"{who['command']}, pid {who['pid']} on host {who['host']}, started {who['started']}"
            except (ValueError, KeyError, TypeError):
                break
        time.sleep(0.05)
    return "a run that left no details"


@contextlib.contextmanager
def hold(runs_root: str, command: str = "fakeface run") -> Iterator[str]:
    """Holds the runs_root's lock for the duration of the block; yields the lock file's path.

    Raises RunsRootBusy, naming the other run, if another process holds it;
    RunsRootUnusable if the folder cannot be made or written.
    """
    path = os.path.join(runs_root, LOCK_FILE)
    try:
        os.makedirs(runs_root, exist_ok=True)
        f = open(path, "a+", encoding="utf-8")
    except OSError as e:
        raise RunsRootUnusable(f"{runs_root}: cannot hold the runs_root's lock {path}: {e.strerror}") from e
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunsRootBusy(f"{runs_root}: another run is using this runs_root: {_holder(path)} "
                               f"(lock {path}); wait for it to end, or give this run another runs_root") from None
        f.truncate(0)
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                   "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}, f)
        f.flush()
        try:
            yield path
        finally:
            f.truncate(0)
            f.flush()
    finally:
        f.close()  # releases the lock
