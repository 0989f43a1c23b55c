"""Errors raised by the checkpoint loaders."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be read safely or does not describe a supported generator."""


class UnsafePickleError(CheckpointError):
    """A pickle references a global outside the allow-list; nothing in it was executed."""
