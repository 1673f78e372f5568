"""Errors caused by user input: shown as one readable line, never as a traceback."""


class UserError(ValueError):
    """Base class of every error a user can fix (bad flag, bad file, bad folder, bad argument).

    Command-line entry points print `error: <message>` and exit with status 2; Python API
    callers can catch it as the `ValueError` it is.
    """


class DataError(UserError):
    """A data source spec, file or folder that cannot be used as given."""
