"""The exit codes and errors every `fakeface` command shares."""

EXIT_OK = 0
EXIT_FAILED = 1  # the work failed, or could not start while another run holds the runs_root
EXIT_USAGE = 2  # bad usage, config or input; the message names the file and the key
EXIT_INTERRUPTED = 130  # interrupted (Ctrl-C); running the command again resumes or redoes it

EXIT_CODES = (
    (EXIT_OK, "done"),
    (EXIT_FAILED, "the work failed (a pipeline step, a server, files that could not be scored), "
                  "or another run holds the runs_root"),
    (EXIT_USAGE, "bad usage, config or input (the message names the file and the key)"),
    (EXIT_INTERRUPTED, "interrupted"),
)


class CommandError(Exception):
    """Ends a command with `code` and the one-line message str(self)."""

    code = EXIT_FAILED


class UsageError(CommandError):
    code = EXIT_USAGE


class WorkFailed(CommandError):
    code = EXIT_FAILED


def interrupted(error: BaseException) -> bool:
    """Whether a Ctrl-C caused `error`: Beam re-raises a KeyboardInterrupt inside a step as a RuntimeError."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False
