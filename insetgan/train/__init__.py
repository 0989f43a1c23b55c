"""Training StyleGAN2 generators: the run's settings (``config``), the training set (``data``), networks and
optimisers (``state``), one step (``step``), resumable states on disk (``checkpoint``) and the loop (``loop``),
with augmentation, the face window, data parallel set-up and diagnostics beside them."""
