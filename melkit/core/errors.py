"""Errors that map onto melkit's exit codes.

0 ok, 1 a quality gate failed, 2 bad input or usage. Library code raises these; only ``cli.py`` turns
them into exit codes, so everything stays usable from Python.
"""


class MelkitError(Exception):
    """Base class for errors melkit reports to the user with a clear message."""

    exit_code = 2


class BadInputError(MelkitError):
    """The user's data, files or options cannot be used (exit code 2)."""

    exit_code = 2


class QualityGateError(MelkitError):
    """A result was produced but failed a quality gate the user asked for (exit code 1)."""

    exit_code = 1
