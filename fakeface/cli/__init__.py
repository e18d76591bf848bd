"""The `fakeface` command: one parser, a module per command group, one error path.

TensorFlow is imported only by the commands that need it, so the quick ones
stay quick. The command groups are imported when the parser is built, inside
main()'s handling of Ctrl-C, so that an interrupt at start-up ends in one line.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, List, Optional

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from fakeface.cli import errors


def _epilog() -> str:
    return "exit codes:\n" + "\n".join(f"  {code:<4} {meaning}" for code, meaning in errors.EXIT_CODES)


def build_parser(client_factory: Optional[Callable[..., Any]] = None) -> argparse.ArgumentParser:
    """The parser of every command; `client_factory` stands in for kfp.Client (tests)."""
    parser = argparse.ArgumentParser(
        prog="fakeface", description="A TFX pipeline that detects GAN-generated face images.",
        epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    from fakeface.cli import data, evaluation, kubeflow, run, serving

    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (data, run, evaluation, kubeflow, serving):
        group.register(commands)
    commands.choices["schedule"].set_defaults(client_factory=client_factory)
    return parser


def dispatch(args: argparse.Namespace) -> int:
    """Runs a parsed command; every error a user can cause ends in one line and its exit code."""
    try:
        from fakeface import catalog
        from fakeface.pipeline import config

        return args.func(args)
    except KeyboardInterrupt:
        print(f"fakeface {args.command}: interrupted; run it again to resume", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    except errors.CommandError as e:
        print(f"fakeface {args.command}: error: {e}", file=sys.stderr)
        return e.code
    except (catalog.CatalogError, config.ConfigError) as e:
        print(f"fakeface {args.command}: error: {e}", file=sys.stderr)
        return errors.EXIT_USAGE
    except Exception as e:  # noqa: BLE001  (only to tell an interrupted step from a fault)
        if not errors.interrupted(e):
            raise
        print(f"fakeface {args.command}: interrupted; run it again to resume", file=sys.stderr)
        return errors.EXIT_INTERRUPTED


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:  # before any command has started: nothing to resume
        print("fakeface: interrupted", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    return dispatch(args)
