"""Measurements: a composite's seam and fidelity numbers (``seams``), what a job kept of the
user's input (``keep``), and the quality of a generator or training snapshot (``model_quality``)."""
