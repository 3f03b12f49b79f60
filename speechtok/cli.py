"""The ``speechtok`` command line: one sub-command per task, each with its own ``--help``.

Sub-commands live beside the code they drive and register themselves here through
``add_<name>_command(subparsers)`` functions. Registration imports nothing heavy (no torch): a
sub-command names its handler as ``"package.module:function"`` and that module is imported only when
the command runs, so ``speechtok --help`` starts instantly and optional extras stay optional.

User errors (:class:`SpeechtokError`) are printed as a single ``error: ...`` line with exit status 2,
never as a stack trace; so are operating-system errors on files (a disk that fills up mid-write).
A reader that stops early (``speechtok info NAME --json | head``) ends the command quietly, as it does
``cat``: that is the reader's choice, not an error.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Sequence

from .errors import SpeechtokError

Register = Callable[[argparse._SubParsersAction], None]


def _registrations() -> list[Register]:
    from .data.cli import add_data_commands
    from .eval.cli import add_eval_command
    from .export.cli import add_export_commands
    from .models.cli import add_model_commands
    from .models.speech_lm_cli import add_speech_lm_commands
    from .train.cli import add_train_command
    from .vocoder.cli import add_vocoder_commands

    return [add_model_commands, add_vocoder_commands, add_speech_lm_commands, add_data_commands, add_train_command,
            add_eval_command, add_export_commands]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechtok",
        description="Speech tokenizers: encode audio to tokens, decode back, train, evaluate.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _registrations():
        register(subparsers)
    return parser


def handler(func: str | Callable[[argparse.Namespace], int | None]) -> Callable[[argparse.Namespace], int | None]:
    """A sub-command's function; ``"package.module:function"`` is imported now, at run time."""
    if callable(func):
        return func
    module, name = func.split(":")
    return getattr(importlib.import_module(module), name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the speechtok process itself, not a caller's (speechtok/allocator.py says why)
        from .allocator import retain_freed_memory
        retain_freed_memory()
    try:
        status = int(handler(args.func)(args) or 0)
        sys.stdout.flush()  # a reader that left shows here, inside the try, not at the interpreter's exit
        return status
    except SpeechtokError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush cannot fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE: what a shell reports for a command whose reader left
    except OSError as exc:  # checked up front where possible; this catches what only the write reveals
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
