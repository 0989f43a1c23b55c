"""The user's photos as latents: loading and cropping (``photos``), face alignment (``align``),
projection and pivotal tuning (``invert``), the cached embedding of a selfie or outfit
(``embedding``), and the identity and perceptual distances it uses (``identity``, ``perceptual``);
learned encoders: training (``encoder_training``, ``encoder_run``) and use (``encoder``)."""
