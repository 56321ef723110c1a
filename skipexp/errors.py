"""Errors a user can cause. The CLI prints their message as one sentence and exits non-zero."""


class UserError(ValueError):
    """A bad value in the config, the data or a file; the message names it and the fix."""


class ConfigError(UserError):
    """A config value that is not allowed or that this machine cannot honour."""


def describe_error(err: BaseException) -> str:
    """``ExceptionType: first line of its message``, for one-line failure reports."""
    text = str(err)
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
