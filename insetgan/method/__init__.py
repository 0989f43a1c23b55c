"""The InsetGAN method: optimisation settings and presets (``config``), the joint optimisation
(``optimize``), its loss terms (``losses``), inset boxes (``regions``, ``boxes``) and the final
composite (``blend``)."""
