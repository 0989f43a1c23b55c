"""StyleGAN2 ops: upfirdn2d, bias_act and conv2d_resample (plain-PyTorch reference implementations)."""
