"""insetgan: compose full-body human images from canvas and inset StyleGAN2 generators."""

__version__ = "0.1.0"
