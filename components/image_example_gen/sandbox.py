"""Inspection (inspection.py) in a child process, so that no file can hang or crash a run.

A decoder is native code: a file can make it loop, exhaust memory or crash the
process, and a thread stuck in it cannot be stopped. So the worker hands its
batches to a child process and waits at most `ingest.decode_timeout_seconds`
for each. A child that runs over the limit is killed; one that dies is noted.
Either way the batch is retried file by file in a fresh child, and the file
that does it again alone is quarantined with what happened, while every other
file of the batch is inspected as usual.

The child runs TensorFlow on one thread, so a worker uses one core; more
workers (Beam's) use more cores. It sees no GPU.

    python -m fakeface.components.image_example_gen.sandbox   # the child; spoken to over stdin/stdout
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import List, Optional, Sequence

from fakeface.components.image_example_gen.records import FileRef, Quarantined
from fakeface.pipeline.config import IngestConfig

# Starting a child imports TensorFlow and traces the decoder: slow on a busy
# machine, but bounded, so that a broken environment fails the run.
STARTUP_TIMEOUT_SECONDS = 600
_READY = "ready"


class _Stopped(Exception):
    """The child did not answer a batch in time, or died on it; str() says which."""


class Sandbox:
    """Inspects batches of files in a child process, within a time limit per batch and per file."""

    def __init__(self, config: IngestConfig):
        self._config = config
        self._process: Optional[subprocess.Popen] = None
        self._requests: Optional[Connection] = None
        self._answers: Optional[Connection] = None

    def inspect(self, refs: Sequence[FileRef]) -> List:
        """A FileRecord or a Quarantined entry per file of `refs`, in order."""
        try:
            return self._ask(refs)
        except _Stopped:
            self.close()
        results: List = []
        for ref in refs:
            try:
                results.extend(self._ask([ref]))
            except _Stopped as e:
                self.close()
                results.append(Quarantined(ref.source, ref.path, str(e)))
        return results

    def _ask(self, refs: Sequence[FileRef]) -> List:
        if self._process is None:
            self._start()
        try:
            self._requests.send(list(refs))
            answered = self._answers.poll(self._config.decode_timeout_seconds)
            if answered:
                return self._answers.recv()
        except (EOFError, OSError):
            raise _Stopped(self._death()) from None
        raise _Stopped(f"decoding did not finish within {self._config.decode_timeout_seconds:g} s "
                       "(ingest.decode_timeout_seconds); the decoder was stopped")

    def _start(self) -> None:
        child_in, self_out = os.pipe()
        self_in, child_out = os.pipe()
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self._process = subprocess.Popen([sys.executable, "-m", __name__], stdin=child_in, stdout=child_out,
                                         env=env, close_fds=True)
        os.close(child_in)
        os.close(child_out)
        self._requests = Connection(self_out, readable=False)
        self._answers = Connection(self_in, writable=False)
        self._requests.send(self._config)
        if not self._answers.poll(STARTUP_TIMEOUT_SECONDS) or self._answers.recv() != _READY:
            self.close()
            raise RuntimeError(f"the image decoder process did not start within {STARTUP_TIMEOUT_SECONDS} s")

    def _death(self) -> str:
        code = self._process.wait()
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return f"the decoder died on it ({how})"

    def close(self) -> None:
        """Stops the child, if one runs; the next batch starts another."""
        if self._process is None:
            return
        for connection in (self._requests, self._answers):
            connection.close()
        self._process.kill()
        self._process.wait()
        self._process = self._requests = self._answers = None


def _serve() -> None:
    """The child: answers each batch of FileRefs with their inspection results until stdin closes."""
    answers = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the answers
    requests = Connection(os.dup(0), writable=False)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from fakeface.components.image_example_gen import inspection

    config = requests.recv()
    inspection.warm_up(config)
    answers.send(_READY)
    while True:
        try:
            refs = requests.recv()
        except EOFError:
            return
        answers.send(inspection.inspect(refs, config))


if __name__ == "__main__":
    _serve()
