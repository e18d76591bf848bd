"""What `fakeface run` shows on the terminal, and the log file that takes everything else.

TensorFlow's C++ logging, Beam's workers and the pip that installs a module
file's wheel write to file descriptors 1 and 2 directly, past anything Python
could redirect; so the log takes over the descriptors themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Dict, Iterator, Mapping, Optional, TextIO

# Name column of the step lines: the longest node id, DistributionValidator, fits.
_WIDTH = 21
# Keras metrics an epoch's progress shows, when the model reports them.
_EPOCH_METRICS = ("loss", "val_auc")


@contextlib.contextmanager
def captured(log_path: str) -> Iterator[TextIO]:
    """Sends all that this process and its children print to `log_path`; yields a stream to the terminal."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding=sys.stdout.encoding or "utf-8")
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log_fd):
            os.close(fd)
        terminal.close()


def tail(path: str, offset: int = 0, lines: int = 20) -> str:
    """The last `lines` lines of the file at `path`, from byte `offset` on."""
    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", errors="replace")
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])


class StepLines:
    """One line per pipeline step: its name as it starts, how it ended and its time as it ends.

    `inline`: nothing else writes to `out`, so a step's line stays open while
    it works and training epochs show on it (rewritten in place on a
    terminal, appended elsewhere). Otherwise each event gets a line of its own.
    `log_path`: the file the steps print to, whose part for each step
    `log_offsets` gives.
    """

    def __init__(self, out: TextIO, inline: bool, log_path: Optional[str] = None):
        self._out = out
        self._inline = inline
        self._tty = inline and out.isatty()
        self._log_path = log_path
        self._started: Dict[str, float] = {}
        self.log_offsets: Dict[str, int] = {}  # step -> where its part of the log begins
        self._open: Optional[str] = None  # the step whose line is open
        self._epochs = 0  # epochs shown on the open line
        self.running: Optional[str] = None  # the step that started and has not ended

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    def start(self, step: str) -> None:
        self.close()
        self._started[step] = time.monotonic()
        self.running = step
        if self._log_path:
            sys.stdout.flush()
            sys.stderr.flush()
            self.log_offsets[step] = os.path.getsize(self._log_path)
        if self._inline:
            self._open, self._epochs = step, 0
            self._write(f"  {step:<{_WIDTH}} " + ("running" if self._tty else ""))
        else:
            self._write(f"  {step:<{_WIDTH}} started\n")

    def epoch(self, epoch: int, epochs: int, metrics: Mapping[str, float]) -> None:
        if self._open is None:
            return
        self._epochs += 1
        if self._tty:
            shown = "  ".join(f"{name} {metrics[name]:.3f}" for name in _EPOCH_METRICS if name in metrics)
            self._write(f"\r\033[K  {self._open:<{_WIDTH}} epoch {epoch}/{epochs}  {shown}")
        else:
            self._write(("epochs " if self._epochs == 1 else "") + f"{epoch} ")

    def end(self, step: str, state: str) -> None:
        seconds = time.monotonic() - self._started.pop(step, time.monotonic())
        self.running = None
        ended = f"{state:<8} {seconds:6.1f} s"
        if self._open == step:
            self._open = None
            if self._tty:
                self._write(f"\r\033[K  {step:<{_WIDTH}} {ended}\n")
            else:
                self._write(("  " if self._epochs else "") + ended + "\n")
        else:
            self.close()
            self._write(f"  {step:<{_WIDTH}} {ended}\n")

    def close(self) -> None:
        """Ends a line left open (by an interruption, say)."""
        if self._open is not None:
            self._open = None
            self._write("\n")


class EpochHandler(logging.Handler):
    """Shows the epochs that fakeface.progress reports on the Trainer's line."""

    def __init__(self, steps: StepLines):
        super().__init__(logging.INFO)
        self._steps = steps

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "epoch"):
            self._steps.epoch(record.epoch, record.epochs, record.metrics)
