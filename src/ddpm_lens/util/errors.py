"""The one error type users see.

Anything the user can fix (a missing file, a bad flag, a config that does not fit a
checkpoint) raises :class:`UserError` with a single line naming the problem and the fix.
The CLI prints it as ``error: <message>`` and exits with status 2, no traceback.
"""


class UserError(Exception):
    """A problem with the user's input; the message is one line and says how to fix it."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def warn(message: str) -> None:
    """Print a one-line warning to stderr (``warning: ...``)."""
    import sys

    print("warning: " + " ".join(str(message).split()), file=sys.stderr, flush=True)
