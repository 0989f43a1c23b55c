"""Training StyleGAN2 generators: augmentation, the training loop, checkpoints."""
