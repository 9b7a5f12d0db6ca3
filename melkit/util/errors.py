"""Errors that map onto melkit's exit codes.

0 ok, 1 a quality gate failed, 2 bad input or usage, 130 / 143 interrupted (SIGINT / SIGTERM). Library code
raises these; only ``cli.py`` turns them into exit codes, so everything stays usable from Python.
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


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) received: raised where the command runs, as Ctrl-C's KeyboardInterrupt is, so that
    every writer cleans up on its way out exactly as it does for Ctrl-C; the CLI exits 128 + the signal number
    (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
