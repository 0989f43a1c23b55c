"""The error type of the ops' argument checks.

``torch_utils`` is the lowest layer and imports nothing of ``insetgan``; the command line turns
:class:`OpArgumentError` into a one-line message as it does ``insetgan.errors.InsetganError``.
"""


class OpArgumentError(ValueError):
    """A bad argument to an op: a one-line message that names the op and the argument."""
