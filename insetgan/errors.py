"""The one error type for bad user input (files, options, photos, configs).

The command line turns :class:`InsetganError` (checkpoint errors included) and ``OSError``
into one-line messages; any other exception is a bug and keeps its traceback.
"""


class InsetganError(ValueError):
    """Bad input from the user: a one-line message that says what is wrong and how to fix it."""
