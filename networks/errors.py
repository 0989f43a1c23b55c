"""Errors raised by the checkpoint loaders (user errors: see :mod:`insetgan.errors`)."""
from insetgan.errors import InsetganError


class CheckpointError(InsetganError):
    """A checkpoint file cannot be read safely or does not describe a supported generator."""


class UnsafePickleError(CheckpointError):
    """A pickle references a global outside the allow-list; nothing in it was executed."""
