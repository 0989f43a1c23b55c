"""A run's networks and optimisers: :class:`TrainState`, fresh (:func:`build_state`) or warm-started
(:func:`warm_start`), and the learning rates for a point of the run."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from insetgan.errors import InsetganError
from insetgan.networks.checkpoints import load_checkpoint
from insetgan.networks.config import GeneratorConfig
from insetgan.networks.discriminator import (HINGE_ARCHITECTURES, ConvDiscriminator, Discriminator, DiscriminatorConfig,
                                             build_discriminator)
from insetgan.networks.generator import Generator
from insetgan.networks.projected import ProjectedDiscriminator
from insetgan.train.config import TrainConfig
from insetgan.train.data import ImageSet
from insetgan.train.face_window import FaceWindow, dataset_face_window


@dataclass
class TrainState:
    """Networks, optimisers and progress of a run."""

    G: Generator
    D: Discriminator | ConvDiscriminator | ProjectedDiscriminator
    G_ema: Generator
    opt_G: torch.optim.Adam
    opt_D: torch.optim.Adam
    step: int = 0
    nimg: int = 0
    start_nimg: int = 0  # where a warm-started run began (its D warm-up counts from here)
    D_face: Discriminator | ConvDiscriminator | None = None  # --face-d: the critic of the face window
    opt_D_face: torch.optim.Adam | None = None
    face_window: FaceWindow | None = None
    D_proj: ProjectedDiscriminator | None = None  # --proj-d: a projected critic beside D
    opt_D_proj: torch.optim.Adam | None = None

    def g_frozen(self, cfg: TrainConfig) -> bool:
        """True while the discriminator warm-up of a warm-started run lasts (G and G_ema stay put)."""
        return self.nimg < self.start_nimg + cfg.d_warmup_kimg * 1000


def build_state(cfg: TrainConfig, data: ImageSet, device: torch.device) -> TrainState:
    """Fresh networks (seeded by ``cfg.seed``) and Adam optimisers with lazy-regularisation adjustment."""
    _, C, H, W = data.images.shape
    torch.manual_seed(cfg.seed)
    gcfg = GeneratorConfig(z_dim=cfg.z_dim, w_dim=cfg.w_dim, img_resolution=H, img_channels=C, square=W == H,
                           mapping_layers=cfg.map_layers, channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                           num_fp16_res=cfg.num_fp16_res, conv_clamp=cfg.conv_clamp)
    d_base, d_max = cfg.d_channels
    dcfg = DiscriminatorConfig(img_resolution=H, img_channels=C, square=W == H, channel_base=d_base,
                               channel_max=d_max, mbstd_group=cfg.mbstd_group,
                               mbstd_channels=cfg.mbstd_channels,
                               num_fp16_res=cfg.num_fp16_res, conv_clamp=cfg.conv_clamp,
                               architecture=cfg.d_arch, feature_res=cfg.d_feature_res, head_width=cfg.d_head_width)
    G = Generator(gcfg).to(device).train()
    D = build_discriminator(dcfg).to(device).train()
    G_ema = Generator(gcfg).to(device).eval().requires_grad_(False)
    G_ema.load_state_dict(G.state_dict())
    ratio = _lazy_r1_ratio(cfg)
    lr_g, lr_d = learning_rates(cfg, 0)
    d_betas = (cfg.beta1 ** ratio, cfg.beta2 ** ratio)
    opt_G = torch.optim.Adam(G.parameters(), lr=lr_g, betas=(cfg.beta1, cfg.beta2), eps=1e-8)
    opt_D = torch.optim.Adam(D.parameters(), lr=lr_d, betas=d_betas, eps=1e-8)
    state = TrainState(G, D, G_ema, opt_G, opt_D)
    if cfg.face_d > 0:  # a second discriminator, the same widths, on the face window
        window = dataset_face_window(data.meta, H, W)
        D_face = build_discriminator(dataclasses.replace(dcfg, img_resolution=window.side, square=True,
                                                         architecture=cfg.face_d_arch or cfg.d_arch))
        state.D_face, state.face_window = D_face.to(device).train(), window
        state.opt_D_face = torch.optim.Adam(D_face.parameters(), lr=lr_d, betas=d_betas, eps=1e-8)
    if cfg.proj_d > 0:
        state.D_proj = build_discriminator(dataclasses.replace(dcfg, architecture="projected")).to(device).train()
        state.opt_D_proj = torch.optim.Adam(state.D_proj.parameters(), lr=lr_d, betas=d_betas, eps=1e-8)
    return state


def _lazy_r1_ratio(cfg: TrainConfig) -> float:
    if cfg.d_arch in HINGE_ARCHITECTURES:  # no R1 steps: no adjustment
        return 1.0
    return cfg.r1_interval / (cfg.r1_interval + 1)  # lazy R1: D's Adam sees 1 extra step per interval


def learning_rates(cfg: TrainConfig, nimg: int) -> tuple[float, float]:
    """Adam lrs of G and D after ``nimg`` images: ``lr`` / ``lr_d``, both halved from ``lr_drop_kimg`` on.

    D's includes the lazy-R1 ratio ``r1_interval / (r1_interval + 1)`` (StyleGAN2's rule).
    """
    scale = 0.5 if cfg.lr_drop_kimg is not None and nimg >= cfg.lr_drop_kimg * 1000 else 1.0
    lr_d = cfg.lr if cfg.lr_d is None else cfg.lr_d
    return cfg.lr * scale, lr_d * scale * _lazy_r1_ratio(cfg)


# Generator fields that fix the shapes of the weights: a warm start needs them equal.
_SHAPE_FIELDS = ("z_dim", "w_dim", "c_dim", "img_resolution", "img_channels", "square", "mapping_layers",
                 "channel_base", "channel_max", "architecture", "kernel_size", "layer_features", "embed_features")


def warm_start(state: TrainState, path: str | Path, device: torch.device) -> None:
    """Start a fresh state's G and G_ema from a generator file (any format ``insetgan`` loads).

    The discriminator and the optimisers stay new. Our own snapshots carry their training
    progress (``training.kimg``/``step`` in the metadata): the run continues from there, so the
    EMA ramp-up and the random draws do not start over, and the D warm-up
    (``cfg.d_warmup_kimg``) counts from that point.
    """
    ckpt = load_checkpoint(path, device)
    src = ckpt.generator
    if not isinstance(src, Generator):
        raise InsetganError(f"--init: {path} holds a {src.cfg.family} generator; training needs a StyleGAN2 one")
    ours, theirs = state.G.cfg, src.cfg
    differ = [f"{k} {getattr(theirs, k)} (this run: {getattr(ours, k)})" for k in _SHAPE_FIELDS
              if getattr(theirs, k) != getattr(ours, k)]
    if differ:
        raise InsetganError(f"--init: {path} was built with a different " + ", ".join(differ))
    weights = {k: v.to(torch.float32) for k, v in src.state_dict().items()}
    try:
        for G in (state.G, state.G_ema):
            G.load_state_dict(weights)
    except RuntimeError as exc:
        raise InsetganError(f"--init: {path} does not fit this run's generator: {str(exc).splitlines()[0]}") from None
    try:
        training = json.loads(ckpt.metadata.get("training", "{}"))
        nimg, step = int(round(float(training.get("kimg", 0)) * 1000)), int(training.get("step", 0))
    except (TypeError, ValueError):
        nimg = step = 0
    state.nimg, state.step, state.start_nimg = max(nimg, 0), max(step, 0), max(nimg, 0)
