"""The one error type for bad user input (files, options, photos, configs).

The command line turns :class:`InsetganError` (checkpoint errors included) and ``OSError``
into one-line messages; any other exception is a bug and keeps its traceback.
"""


class InsetganError(ValueError):
    """Bad input from the user: a one-line message that says what is wrong and how to fix it."""


def error_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of ``exc``'s message (its type name when empty), cut to ``limit`` characters.

    Third-party errors on damaged files may quote whole chunks of the file; the message built
    from them stays one short line.
    """
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
