"""StyleGAN2 generators and the checkpoint formats they are stored in."""
