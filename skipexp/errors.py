"""Errors a user can cause. The CLI prints their message as one sentence and exits non-zero."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


class UserError(ValueError):
    """A bad value in the config, the data or a file; the message names it and the fix."""


class ConfigError(UserError):
    """A config value that is not allowed or that this machine cannot honour."""


def describe_error(err: BaseException) -> str:
    """``ExceptionType: first line of its message``, for one-line failure reports."""
    text = str(err)
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


@contextlib.contextmanager
def exit_on_user_error(prog: str) -> Iterator[None]:
    """The one exit path of every console script for a user's error: ``PROG: error: SENTENCE`` once on stderr,
    then exit 2 (or the error's own ``exit_code``, e.g. 128 + a signal's number). ``SKIPEXP_TRACEBACK=1``
    lets the error through with its traceback instead."""
    try:
        yield
    except UserError as err:
        if os.environ.get("SKIPEXP_TRACEBACK"):
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(getattr(err, "exit_code", 2))
