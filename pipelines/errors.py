"""Errors caused by user input: shown as one readable line, never as a traceback."""


class UserError(Exception):
    """Base class of every error a user can fix (bad flag, bad file, bad folder).

    Command-line entry points print `error: <message>` and exit with status 2.
    """


class DataError(UserError):
    """A data source spec, file or folder that cannot be used as given."""
