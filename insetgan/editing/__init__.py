"""Latent editing: direction files of the field's formats, applying them, and computing new ones.

:mod:`~insetgan.editing.spec` parses ``--edit`` specs, :mod:`~insetgan.editing.directions` reads
and checks direction files (:mod:`~insetgan.editing.readers` holds the bounded file readers),
:mod:`~insetgan.editing.apply` applies them (W edits to the latents, style-space edits as hooks),
:mod:`~insetgan.editing.sefa` and :mod:`~insetgan.editing.boundary` compute directions (SeFa,
InterFaceGAN), :mod:`~insetgan.editing.samples` writes samples to label and reads the labels, and
:mod:`~insetgan.editing.strip` renders the ``insetgan edit`` strips. See docs/editing.md.
"""
