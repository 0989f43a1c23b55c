"""StyleGAN2 training: non-saturating logistic loss, lazy R1, generator EMA, DiffAugment, data parallel.

One training step draws everything random for the *global* batch from a generator seeded by
``(seed, step)``: real indices and x-flips, latents, style-mixing cut-offs and augmentation
parameters. Each process takes its slice of that batch and processes it in chunks of
``batch_gpu``; every loss is a sum over samples divided by the global batch size, and gradients
are summed over processes (``all_reduce``) before each optimiser step. So a run on N processes
equals a single-process run with the same global batch and ``batch_gpu`` (to float rounding),
and a resumed run repeats exactly the steps an uninterrupted run would take.

Checkpoints hold tensors, numbers and strings only, so they load with ``weights_only=True``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from insetgan.data.dataset import read_dataset
from insetgan.train.augment import augment, draw_params, parse_policy
from insetgan.train.face_window import FaceWindow, dataset_face_window, window_gamma
from insetgan.networks.config import GeneratorConfig
from insetgan.networks.discriminator import (HINGE_ARCHITECTURES, ConvDiscriminator, Discriminator,
                                            DiscriminatorConfig, build_discriminator, check_architecture)
from insetgan.networks.projected import ProjectedDiscriminator
from insetgan.networks.generator import Generator
from insetgan.errors import InsetganError
from insetgan.progress import Progress

log = logging.getLogger(__name__)
STATE_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (StyleGAN2 defaults scaled for small models)."""

    kimg: float = 200.0
    batch: int = 32
    batch_gpu: int | None = None
    gamma: float = 1.0
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    lr: float = 0.0025
    lr_d: float | None = None  # the discriminator's lr (two time-scale updates); None: the same as lr
    lr_drop_kimg: float | None = None  # from this many kimg on, both lrs are halved (None: never)
    beta1: float = 0.0
    beta2: float = 0.99
    r1_interval: int = 16
    style_mixing: float = 0.9
    aug: str = "color,translation,cutout"
    xflip: bool = True
    noise: bool = True
    z_dim: int = 512
    w_dim: int = 512
    map_layers: int = 8
    channel_base: int = 16384
    channel_max: int = 512
    d_channel_base: int | None = None  # the discriminator's widths (None: the generator's); a warm start keeps G's
    d_channel_max: int | None = None
    d_arch: str = "resnet"  # the discriminator: "resnet" (StyleGAN2's), "conv" (plain strided) or "projected"
    d_feature_res: int | None = None  # projected: the feature network's input size, long side (None: the image's)
    d_head_width: float = 0.5  # projected: width multiplier of its projections and scale discriminators
    num_fp16_res: int = 4
    conv_clamp: float | None = 256.0
    mbstd_group: int = 4
    mbstd_channels: int = 1  # minibatch-std features: channel groups averaged separately
    seed: int = 0
    snapshot_kimg: float = 10.0
    grid: int = 16
    d_warmup_kimg: float = 0.0  # a warm-started run trains only D for this many kimg first
    face_d: float = 0.0  # body datasets: G-loss weight of a second discriminator on the face window (0: off)
    face_d_arch: str | None = None  # the face discriminator's architecture (None: d_arch)
    proj_d: float = 0.0  # G-loss weight of a projected discriminator beside a resnet/conv one (0: off)


    def __post_init__(self) -> None:
        if self.batch < 1 or self.kimg <= 0 or self.lr <= 0 or self.gamma < 0 or self.r1_interval < 1:
            raise InsetganError("need batch >= 1, kimg > 0, lr > 0, gamma >= 0 and r1_interval >= 1")
        if not self.face_d >= 0:
            raise InsetganError(f"the face discriminator's weight must be >= 0, got {self.face_d}")
        if not self.proj_d >= 0:
            raise InsetganError(f"the projected discriminator's weight must be >= 0, got {self.proj_d}")
        if self.proj_d > 0 and self.d_arch == "projected":
            raise InsetganError("--proj-d adds a projected discriminator beside a resnet or conv one: "
                                "--d-arch projected already is one")
        if not self.d_warmup_kimg >= 0:
            raise InsetganError(f"the discriminator warm-up must be >= 0 kimg, got {self.d_warmup_kimg}")
        if self.lr_d is not None and self.lr_d <= 0:
            raise InsetganError(f"the discriminator's lr must be > 0, got {self.lr_d}")
        if self.lr_drop_kimg is not None and not self.lr_drop_kimg >= 0:
            raise InsetganError(f"the lr drop must be at >= 0 kimg, got {self.lr_drop_kimg}")
        if self.batch_gpu is not None and (self.batch_gpu < 1 or self.batch % self.batch_gpu):
            raise InsetganError(f"--batch {self.batch} must be a multiple of --batch-gpu {self.batch_gpu}")
        if self.map_layers < 1 or min(self.channel_base, self.channel_max, *self.d_channels) < 1:
            raise InsetganError("map_layers and the channel bases and maxima must be >= 1")
        c4 = min(self.d_channels[0] // 4, self.d_channels[1])
        if self.mbstd_channels < 1 or c4 % self.mbstd_channels:
            raise InsetganError(f"--mbstd-channels {self.mbstd_channels} must divide the discriminator's "
                             f"{c4} channels at 4x4")
        check_architecture(self.d_arch)
        if self.face_d_arch is not None:
            check_architecture(self.face_d_arch)
        parse_policy(self.aug)

    @property
    def d_channels(self) -> tuple[int, int]:
        """The discriminator's (channel_base, channel_max)."""
        return (self.channel_base if self.d_channel_base is None else self.d_channel_base,
                self.channel_max if self.d_channel_max is None else self.d_channel_max)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)


@dataclass
class ImageSet:
    """A prepared dataset in memory: uint8 images [N, C, H, W] and its ``dataset.json`` (or {})."""

    images: torch.Tensor
    meta: dict[str, Any]

    @property
    def square(self) -> bool:
        """True for square images, False for 2:1 portrait canvases."""
        return self.images.shape[-1] == self.images.shape[-2]


def load_dataset(path: str | Path) -> ImageSet:
    """Load a folder of PNG/JPEG images (or a .zip of them) with its optional ``dataset.json``.

    Read by :func:`insetgan.data.dataset.read_dataset`: headers checked before decoding, one-line errors.
    """
    images, meta = read_dataset(path)
    return ImageSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), meta)


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


def _set_learning_rates(state: TrainState, cfg: TrainConfig) -> None:
    lr_g, lr_d = learning_rates(cfg, state.nimg)
    for opt, lr in [(state.opt_G, lr_g)] + [(c.opt, lr_d) for c in _critics(state, cfg)]:
        for group in opt.param_groups:
            group["lr"] = lr


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
    from insetgan.networks.checkpoints import load_checkpoint

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


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _sum_grads(module: torch.nn.Module) -> None:
    """Sum gradients over processes (one flat all_reduce); missing gradients count as zero."""
    _, world = _world()
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        p.grad.nan_to_num_(nan=0, posinf=1e5, neginf=-1e5)
    if world > 1 and params:
        flat = torch.cat([p.grad.flatten() for p in params])
        dist.all_reduce(flat)
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad.copy_(g.view_as(p))


@dataclass
class _Draws:
    """Everything random in one step, for the global batch."""

    real_idx: torch.Tensor
    flip: torch.Tensor
    z: dict[str, torch.Tensor]
    z2: dict[str, torch.Tensor]
    mix: dict[str, torch.Tensor]
    aug: dict[str, torch.Tensor]


def _draw(cfg: TrainConfig, step: int, n_data: int, num_ws: int) -> _Draws:
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    B = cfg.batch
    real_idx = torch.randint(n_data, (B,), generator=gen)
    flip = (torch.rand(B, generator=gen) < 0.5) & cfg.xflip
    z, z2, mix, aug = {}, {}, {}, {}
    for phase in ("G", "D"):
        z[phase] = torch.randn(B, cfg.z_dim, generator=gen)
        z2[phase] = torch.randn(B, cfg.z_dim, generator=gen)
        cut = torch.randint(1, max(num_ws, 2), (B,), generator=gen)
        use = torch.rand(B, generator=gen) < cfg.style_mixing
        mix[phase] = torch.where(use, cut, torch.full_like(cut, num_ws))
        aug[phase] = draw_params(gen, B)
    aug["real"] = draw_params(gen, B)
    return _Draws(real_idx, flip, z, z2, mix, aug)


def _generate(G: Generator, z: torch.Tensor, z2: torch.Tensor, cutoff: torch.Tensor, noise: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with style mixing (layers >= cutoff take the second latent) and the unmixed w [N, D].

    ``noise=False`` trains without the per-pixel noise inputs: their strengths stay 0, so the
    trained generator gives the same image in every noise mode.
    """
    ws = G.mapping(z, None)
    ws2 = G.mapping(z2, None)
    layer = torch.arange(G.num_ws, device=z.device).view(1, -1, 1)
    ws = torch.where(layer >= cutoff.to(z.device).view(-1, 1, 1), ws2, ws)
    return G.synthesis(ws, noise_mode="random" if noise else "none"), ws[:, 0]


def _seed_noise(cfg: TrainConfig, step: int, phase: int, start: int) -> None:
    """Seed the synthesis noise of one chunk from its place in the global batch (not from the process)."""
    torch.manual_seed((cfg.seed * 1_000_003 + step) * 1009 + phase * 4099 + start)


def _reals(data: ImageSet, idx: torch.Tensor, flip: torch.Tensor, device: torch.device) -> torch.Tensor:
    img = data.images[idx].to(device, torch.float32) / 127.5 - 1
    return torch.where(flip.to(device).view(-1, 1, 1, 1), img.flip(-1), img)


@dataclass(frozen=True)
class _Critic:
    """A discriminator with its optimiser, the part of the image it sees, its loss and its R1 weight."""

    name: str
    net: torch.nn.Module
    opt: torch.optim.Adam
    view: Callable[[torch.Tensor], torch.Tensor]
    gamma: float  # 0 for hinge critics (no R1)
    weight: float  # of its loss in the generator's
    hinge: bool = False  # hinge loss on logits [N, K] (else the logistic loss on [N, 1])

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """The generator's loss, summed over the samples: hinge ``-logit``, logistic ``softplus(-logit)``."""
        logits = self.net(self.view(fake))
        return (-logits if self.hinge else F.softplus(-logits)).mean(dim=1).sum()

    def d_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The discriminator's loss on a chunk of fakes and reals, summed over the samples."""
        lf, lr = self.net(self.view(fake)), self.net(self.view(real))
        if self.hinge:
            return F.relu(1 + lf).mean(dim=1).sum() + F.relu(1 - lr).mean(dim=1).sum()
        return F.softplus(lf).mean(dim=1).sum() + F.softplus(-lr).mean(dim=1).sum()


def _critics(state: TrainState, cfg: TrainConfig) -> list[_Critic]:
    """The whole-image discriminator and, with --face-d, the face-window one (R1 scaled to its side)."""
    hinge = cfg.d_arch in HINGE_ARCHITECTURES
    critics = [_Critic("D", state.D, state.opt_D, lambda x: x, 0.0 if hinge else cfg.gamma, 1.0, hinge)]
    if state.D_face is not None and state.opt_D_face is not None and state.face_window is not None:
        window = state.face_window
        face_hinge = (cfg.face_d_arch or cfg.d_arch) in HINGE_ARCHITECTURES
        gamma = 0.0 if face_hinge else window_gamma(cfg.gamma, window, state.G.img_resolution)
        critics.append(_Critic("D_face", state.D_face, state.opt_D_face, window.crop, gamma, cfg.face_d, face_hinge))
    if state.D_proj is not None and state.opt_D_proj is not None:
        critics.append(_Critic("D_proj", state.D_proj, state.opt_D_proj, lambda x: x, 0.0, cfg.proj_d, True))
    return critics


def _step_critics(critics: list[_Critic]) -> None:
    for c in critics:
        _sum_grads(c.net)
        c.opt.step()
        c.opt.zero_grad(set_to_none=True)
        if isinstance(c.net, ProjectedDiscriminator):
            c.net.power_iteration()


def _generator_step(state: TrainState, critics: list[_Critic], cfg: TrainConfig, r: _Draws, parts: list[slice],
                    policy: tuple[str, ...], device: torch.device) -> torch.Tensor:
    """The G phase of a step (non-saturating logistic loss, weighted over the critics) and the w_avg update;
    returns G's loss."""
    _, world = _world()
    G, B = state.G, cfg.batch
    G.requires_grad_(True)
    for c in critics:
        c.net.requires_grad_(False)
    total = torch.zeros((), device=device)
    w_sum = torch.zeros(G.w_dim, device=device)
    for sl in parts:
        _seed_noise(cfg, state.step, 0, sl.start)
        img, w = _generate(G, r.z["G"][sl].to(device), r.z2["G"][sl].to(device), r.mix["G"][sl], cfg.noise)
        img = augment(img, r.aug["G"][sl], policy)
        loss = sum(c.weight * c.g_loss(img) for c in critics) / B
        loss.backward()
        total += loss.detach()
        w_sum += w.detach().sum(0)
    _sum_grads(G)
    state.opt_G.step()
    state.opt_G.zero_grad(set_to_none=True)
    if world > 1:
        dist.all_reduce(w_sum)
    with torch.no_grad():  # track w_avg from the whole global batch, once per step
        beta = G.mapping.w_avg_beta
        if beta is not None:
            G.mapping.w_avg.copy_((w_sum / B).lerp(G.mapping.w_avg, beta))
    return total


def train_step(state: TrainState, data: ImageSet, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """One G step, one D step (and R1 every ``r1_interval`` steps) and the EMA update; returns losses."""
    rank, world = _world()
    B = cfg.batch
    if B % world:
        raise InsetganError(f"--batch {B} must be divisible by the number of processes ({world})")
    local = B // world
    chunk = cfg.batch_gpu or local
    if local % chunk:
        raise InsetganError(f"the per-process batch {local} must be a multiple of --batch-gpu {chunk}")
    G = state.G
    _set_learning_rates(state, cfg)
    r = _draw(cfg, state.step, data.images.shape[0], G.num_ws)
    policy = parse_policy(cfg.aug)
    parts = [slice(rank * local + i, rank * local + i + chunk) for i in range(0, local, chunk)]
    critics = _critics(state, cfg)
    stats = torch.zeros(1 + 2 * len(critics), device=device)  # G loss; per critic: its loss, its R1 penalty

    frozen = state.g_frozen(cfg)
    if not frozen:
        stats[0] = _generator_step(state, critics, cfg, r, parts, policy, device)

    # Discriminators: logistic loss on fakes and reals, lazy R1 on reals.
    G.requires_grad_(False)
    for c in critics:
        c.net.requires_grad_(True)
    for sl in parts:
        _seed_noise(cfg, state.step, 1, sl.start)
        with torch.no_grad():
            fake, _ = _generate(G, r.z["D"][sl].to(device), r.z2["D"][sl].to(device), r.mix["D"][sl], cfg.noise)
        fake = augment(fake, r.aug["D"][sl], policy)
        real = augment(_reals(data, r.real_idx[sl], r.flip[sl], device), r.aug["real"][sl], policy)
        losses = [c.d_loss(fake, real) / B for c in critics]
        sum(losses).backward()
        for i, loss in enumerate(losses):
            stats[1 + 2 * i] += loss.detach()
    _step_critics(critics)
    # R1 is off while G is frozen: a new discriminator must first learn to tell the fixed generator's samples
    # from reals, and the penalty at the recipe's gamma flattens it to chance instead (MODEL_CARD.md, issue 14).
    r1_critics = [(i, c) for i, c in enumerate(critics) if c.gamma > 0]
    r1_now = bool(r1_critics) and not frozen and state.step % cfg.r1_interval == 0
    if r1_now:
        for sl in parts:
            real = _reals(data, r.real_idx[sl], r.flip[sl], device).requires_grad_(True)
            seen = augment(real, r.aug["real"][sl], policy)
            total = torch.zeros((), device=device)
            for i, c in r1_critics:
                (grad,) = torch.autograd.grad(c.net(c.view(seen)).sum(), real, create_graph=True)
                penalty = grad.square().sum(dim=(1, 2, 3))
                total = total + (penalty * (c.gamma / 2) * cfg.r1_interval).sum() / B
                stats[2 + 2 * i] += penalty.detach().sum() / B
            total.backward()
        _step_critics([c for _, c in r1_critics])
    for c in critics:
        c.net.requires_grad_(False)
    if world > 1:
        dist.all_reduce(stats)

    # Generator EMA (half-life ema_kimg thousand images, ramped up at the start of a run).
    state.nimg += B
    ema_nimg = cfg.ema_kimg * 1000
    if cfg.ema_rampup is not None:
        ema_nimg = min(ema_nimg, state.nimg * cfg.ema_rampup)
    ema_beta = 1.0 if frozen else 0.5 ** (B / max(ema_nimg, 1e-8))
    with torch.no_grad():
        for p_ema, p in zip(state.G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, ema_beta))
        for b_ema, b in zip(state.G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)
    state.step += 1
    out = {} if frozen else {"loss_G": float(stats[0])}
    for i, c in enumerate(critics):
        out[f"loss_{c.name}"] = float(stats[1 + 2 * i])
        if r1_now and c.gamma > 0:
            out["r1" if c.name == "D" else f"r1_{c.name[2:]}"] = float(stats[2 + 2 * i])
    return out


def state_dict(state: TrainState, cfg: TrainConfig) -> dict[str, Any]:
    """The whole training state as tensors, numbers and strings (loads with ``weights_only=True``)."""
    return {"version": STATE_VERSION, "G": state.G.state_dict(), "D": state.D.state_dict(),
            "G_ema": state.G_ema.state_dict(), "opt_G": state.opt_G.state_dict(), "opt_D": state.opt_D.state_dict(),
            "step": state.step, "nimg": state.nimg, "start_nimg": state.start_nimg, "config": json.dumps(cfg.to_dict()),
            "G_config": state.G.cfg.to_json(), "D_config": json.dumps(state.D.cfg.to_dict()),
            "rng_torch": torch.get_rng_state()} | _extra_critics_state(state)


_EXTRA_CRITICS = ("D_face", "D_proj")  # optional critics: state attributes, each with its opt_<name>


def _extra_critics_state(state: TrainState) -> dict[str, Any]:
    out = {}
    for name in _EXTRA_CRITICS:
        net, opt = getattr(state, name), getattr(state, f"opt_{name}")
        if net is not None and opt is not None:
            out |= {name: net.state_dict(), f"opt_{name}": opt.state_dict()}
    return out


def save_state(state: TrainState, cfg: TrainConfig, path: Path) -> None:
    """Write the training state atomically (temporary file, then rename)."""
    from insetgan.io import atomic_write_bytes, encode

    atomic_write_bytes(path, encode(lambda buf: torch.save(state_dict(state, cfg), buf)))


def load_state(path: str | Path, cfg: TrainConfig, data: ImageSet, device: torch.device) -> TrainState:
    """Resume: rebuild the networks for ``cfg`` and ``data`` and load a saved state (weights_only)."""
    from insetgan.networks.torch_files import load_torch_file

    try:
        sd = load_torch_file(path)  # bounded work; the tensors move to ``device`` as they are loaded below
    except InsetganError as exc:
        raise InsetganError(f"cannot read training state {exc}") from None
    if not isinstance(sd, dict) or sd.get("version") != STATE_VERSION:
        raise InsetganError(f"{path} is not an insetgan training state")
    saved = json.loads(sd["config"])
    arch = ("z_dim", "w_dim", "map_layers", "channel_base", "channel_max", "d_channel_base", "d_channel_max",
            "d_arch", "d_feature_res", "d_head_width", "mbstd_channels", "batch", "seed", "aug", "noise")
    before = {k: saved.get(k, getattr(TrainConfig, k)) for k in arch}  # older states lack newer keys
    changed = [k for k in arch if before[k] != getattr(cfg, k)]
    if (saved.get("face_d", 0) > 0) != (cfg.face_d > 0):  # its weight may change, not whether it exists
        before["face_d"] = saved.get("face_d", 0)
        changed.append("face_d")
    elif cfg.face_d > 0 and (saved.get("face_d_arch") or before["d_arch"]) != (cfg.face_d_arch or cfg.d_arch):
        before["face_d_arch"] = saved.get("face_d_arch") or before["d_arch"]
        changed.append("face_d_arch")
    if (saved.get("proj_d", 0) > 0) != (cfg.proj_d > 0):  # likewise the projected critic
        before["proj_d"] = saved.get("proj_d", 0)
        changed.append("proj_d")
    if changed:
        raise InsetganError(f"--resume: the run was trained with different {', '.join(changed)} "
                         f"({', '.join(f'{k}={before[k]}' for k in changed)})")
    state = build_state(cfg, data, device)
    try:
        extra = [name for name in _EXTRA_CRITICS if getattr(state, name) is not None]
        for name in ("G", "D", "G_ema", *extra):
            getattr(state, name).load_state_dict(sd[name])
        optimisers = [(state.opt_G, sd["opt_G"]), (state.opt_D, sd["opt_D"])]
        optimisers += [(getattr(state, f"opt_{name}"), sd[f"opt_{name}"]) for name in extra]
        for opt, saved_opt in optimisers:
            betas = [g["betas"] for g in opt.param_groups]
            opt.load_state_dict(saved_opt)
            for g, b in zip(opt.param_groups, betas):  # this run's betas; its lrs are set below
                g["betas"] = b
    except (RuntimeError, KeyError, ValueError) as exc:
        raise InsetganError(f"--resume: {path} does not match this dataset/config: {str(exc).splitlines()[0]}") from None
    state.step, state.nimg = int(sd["step"]), int(sd["nimg"])
    state.start_nimg = int(sd.get("start_nimg", 0))  # older states: not warm-started
    _set_learning_rates(state, cfg)  # this run's --lr (a resumed run may lower it) and its drop
    torch.set_rng_state(sd["rng_torch"].cpu())
    return state


def sample_grid(G: Generator, seeds: int, device: torch.device) -> np.ndarray:
    """A grid (HWC uint8) of ``seeds`` images from fixed seeds 0..seeds-1 (constant noise, no truncation)."""
    from insetgan.generate import z_from_seed
    from insetgan.io import grid, to_uint8

    with torch.no_grad():
        z = torch.cat([z_from_seed(s, G.z_dim) for s in range(seeds)]).to(device)
        imgs = G(z, None, noise_mode="const")
    return grid([to_uint8(i) for i in imgs.cpu()], cols=int(math.ceil(math.sqrt(seeds))))


def train(data: ImageSet, cfg: TrainConfig, outdir: Path, device: torch.device, resume: str | None = None,
          progress: Progress | None = None, init: str | None = None) -> TrainState:
    """Train until ``cfg.kimg`` thousand images; snapshots (state, sample grid, safetensors G_ema) on rank 0.

    ``progress(images shown, images in all, losses with kimg and img/s)`` is called after
    every step on rank 0. ``init`` (a generator file, ignored with ``resume``) warm-starts G
    and G_ema (:func:`warm_start`); with ``cfg.d_warmup_kimg`` the new discriminator first
    trains alone against it.

    Every ``snapshot_kimg`` and at the end, rank 0 writes ``state-KKKKKK.pt`` (resumable),
    ``samples-KKKKKK.png`` and ``network-KKKKKK.safetensors`` (G_ema in our format, with the
    dataset's region priors in its metadata), and refreshes ``network-latest.safetensors``.
    """
    from insetgan.io import atomic_write_bytes, png_bytes
    from insetgan.networks import native

    rank, world = _world()
    if resume:
        state = load_state(resume, cfg, data, device)
    else:
        state = build_state(cfg, data, device)
        if init:
            warm_start(state, init, device)
            if state.nimg >= cfg.kimg * 1000:
                raise InsetganError(f"--init: {init} is already at {state.nimg / 1000:g} kimg; "
                                    f"--kimg {cfg.kimg:g} must be more")
    total = int(cfg.kimg * 1000)
    snap_every = max(int(cfg.snapshot_kimg * 1000), cfg.batch)
    next_snap = (state.nimg // snap_every + 1) * snap_every
    t_last = time.perf_counter()
    while state.nimg < total:
        losses = train_step(state, data, cfg, device)
        now = time.perf_counter()
        ips = cfg.batch / max(now - t_last, 1e-9)
        t_last = now
        if progress is not None and rank == 0:
            progress(min(state.nimg, total), total, {**losses, "kimg": state.nimg / 1000, "img/s": ips})
        if rank == 0 and (state.nimg >= next_snap or state.nimg >= total):
            tag = f"{state.nimg // 1000:06d}"
            save_state(state, cfg, outdir / f"state-{tag}.pt")
            atomic_write_bytes(outdir / f"samples-{tag}.png", png_bytes(sample_grid(state.G_ema, cfg.grid, device)))
            extra = {"training": {"kimg": state.nimg / 1000, "step": state.step, "config": cfg.to_dict()},
                     "dataset": {k: data.meta[k] for k in ("kind", "source", "count") if k in data.meta}}
            if "priors" in data.meta:
                extra["region_priors"] = data.meta["priors"]
            for name in (f"network-{tag}.safetensors", "network-latest.safetensors"):
                native.save(state.G_ema, outdir / name, extra=extra)
            log.info("snapshot at %.1f kimg: %s", state.nimg / 1000, outdir / f"state-{tag}.pt")
            next_snap = (state.nimg // snap_every + 1) * snap_every
    return state
