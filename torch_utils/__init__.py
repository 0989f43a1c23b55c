"""Tensor utilities and resampling/activation ops used by the generators (no model knowledge)."""
