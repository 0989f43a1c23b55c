"""GAN inversion: project images into a generator's W or W+ space, then (optionally) pivotal tuning.

The projector follows the StyleGAN2 recipe (Karras et al. 2020, Sec. 5): the latent starts at w_avg with added
noise of 0.05·σ_w that ramps to zero over the first 75% of the steps, Adam with a linear lr
ramp-up and cosine ramp-down, per-layer noise maps optimised with a multi-scale
autocorrelation regulariser, and a perceptual + pixel reconstruction loss (optionally an
identity loss and a mask that restricts the loss to a region). Noise maps start from the
generator's stored constant noise, so the start image is exactly ``G(w_avg)``.

Pivotal tuning (PTI, Roich et al. 2022) then fine-tunes a copy of the generator around the
pivot latent so the reconstruction sharpens while the latent stays editable.

Everything works on a batch of B images at once; every image has its own latent and noise
maps and receives exactly the gradients it would get alone (PTI tunes one generator for the
whole batch).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from insetgan.errors import InsetganError
from insetgan.eval.seams import ssim
from insetgan.method import losses as L
from insetgan.method.optimize import lr_factor
from insetgan.networks.generator import Generator
from insetgan.progress import Progress

MODES = ("w", "wplus")
ImageLoss = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class InvertConfig:
    """Projector settings (defaults: the StyleGAN2 recipe with fewer steps, plus a pixel term)."""

    mode: str = "wplus"
    steps: int = 300
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    w_noise: float = 0.05
    w_noise_ramp: float = 0.75
    noise_reg: float = 1e5
    optimize_noise: bool = True
    perceptual_weight: float = 1.0
    pixel_weight: float = 1.0
    identity_weight: float = 0.0
    w_avg_samples: int = 10000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InsetganError(f"inversion mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.steps < 1 or self.lr <= 0 or self.w_avg_samples < 2:
            raise InsetganError("inversion needs steps >= 1, lr > 0 and w_avg_samples >= 2")
        if min(self.perceptual_weight, self.pixel_weight, self.identity_weight, self.noise_reg, self.w_noise) < 0:
            raise InsetganError("inversion loss weights must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)


REFINE_STEPS = 100  # projector steps after an encoder's start (docs/PERFORMANCE.md, "Encoder start")
REFINE_LR = 0.1


def refine_config(steps: int = REFINE_STEPS, **changes: Any) -> InvertConfig:
    """The projector's settings for refining an encoder's start: fewer steps, a lower lr, no latent noise."""
    return InvertConfig(**{"steps": steps, "lr": REFINE_LR, "w_noise": 0.0, **changes})


@dataclass(frozen=True)
class PTIConfig:
    """Pivotal-tuning settings (the PTI paper: lr 3e-4, ~350 steps, LPIPS + L2)."""

    steps: int = 350
    lr: float = 3e-4
    perceptual_weight: float = 1.0
    pixel_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.lr <= 0 or min(self.perceptual_weight, self.pixel_weight) < 0:
            raise InsetganError("PTI needs steps >= 1, lr > 0 and weights >= 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)


@dataclass
class Projection:
    """What :func:`project` returns: W+ latents [B, L, D], per-image noise maps [B, 1, H, W] per layer."""

    ws: torch.Tensor
    noise: list[torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def w_stats(G: Generator, samples: int = 10000, seed: int = 0) -> tuple[torch.Tensor, float]:
    """(w_avg [1, 1, D], σ_w) of the mapping network, from ``samples`` seeded z draws (no truncation)."""
    device = G.w_avg.device
    gen = torch.Generator().manual_seed(seed)
    ws = []
    with torch.no_grad():
        for chunk in torch.randn(samples, G.z_dim, generator=gen).split(2000):
            ws.append(G.mapping(chunk.to(device), None)[:, :1].to(torch.float32))
    w = torch.cat(ws)
    w_avg = w.mean(0, keepdim=True)
    return w_avg, float(((w - w_avg).square().sum() / samples).sqrt())


def noise_regularizer(noise: list[torch.Tensor]) -> torch.Tensor:
    """StyleGAN2's noise-map regulariser per image, [B]: squared autocorrelation (shift 1, x and y) over a pyramid."""
    total = torch.zeros(noise[0].shape[0], device=noise[0].device)
    for n in noise:
        while True:
            total = total + (n * n.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (n * n.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
            if min(n.shape[-2:]) <= 8:
                break
            n = torch.nn.functional.avg_pool2d(n, 2)
    return total


def _normalize_noise_(noise: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for n in noise:
            n -= n.mean(dim=(1, 2, 3), keepdim=True)
            n *= n.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


def reconstruction_loss(img: torch.Tensor, target: torch.Tensor, perceptual: L.Perceptual | None,
                        perceptual_weight: float, pixel_weight: float, mask: torch.Tensor | None = None
                        ) -> dict[str, torch.Tensor]:
    """Perceptual and pixel (MSE) terms per image, [B] each; ``mask`` [1|B, 1, H, W] limits both to a region."""
    out: dict[str, torch.Tensor] = {}
    if perceptual is not None and perceptual_weight > 0:
        a, b = (img, target) if mask is None else (img * mask, target * mask)
        out["perceptual"] = perceptual(a, b)
    if pixel_weight > 0:
        err = (img - target).square()
        out["pixel"] = L.masked_mean(err, mask) if mask is not None else err.flatten(1).mean(1)
    return out


def _check_target(G: Generator, target: torch.Tensor, mask: torch.Tensor | None) -> None:
    want = G.img_shape
    if target.ndim != 4 or tuple(target.shape[1:]) != want:
        raise InsetganError(f"targets must be [B, {want[0]}, {want[1]}, {want[2]}] for this generator, "
                         f"got {list(target.shape)}")
    if mask is not None and (mask.ndim != 4 or mask.shape[1] != 1 or tuple(mask.shape[-2:]) != want[1:]
                             or mask.shape[0] not in (1, target.shape[0])):
        raise InsetganError(f"the mask must be [1|B, 1, {want[1]}, {want[2]}], got {list(mask.shape)}")
    if mask is not None and float(mask.sum()) == 0:
        raise InsetganError("the mask is empty: nothing to invert")


def synthesize(G: Generator, ws: torch.Tensor, noise: list[torch.Tensor] | None) -> torch.Tensor:
    """Render W+ ``ws`` with explicit noise maps (``None``: the generator's stored constant noise)."""
    return G.synthesis(ws, noise_mode="const", noise=noise, fused_modconv=False)


def start_latent(G: Generator, init_ws: torch.Tensor | None, batch: int, mode: str, w_avg: torch.Tensor
                 ) -> torch.Tensor:
    """The latent the projector starts from, [B, 1, D] (mode w) or [B, num_ws, D]: ``w_avg`` or ``init_ws``.

    ``init_ws`` (e.g. an encoder's W+) is [B, num_ws, D]; in mode w its rows are averaged.
    """
    if init_ws is None:
        return w_avg.repeat(batch, 1 if mode == "w" else G.num_ws, 1)
    want = (batch, G.num_ws, G.w_dim)
    if tuple(init_ws.shape) != want:
        raise InsetganError(f"the start latent must be {list(want)}, got {list(init_ws.shape)}")
    if not bool(torch.isfinite(init_ws).all()):
        raise InsetganError("the start latent has NaN or infinite values")
    init = init_ws.detach().to(w_avg.device, torch.float32)
    return init.mean(1, keepdim=True) if mode == "w" else init.clone()


def project(G: Generator, target: torch.Tensor, cfg: InvertConfig = InvertConfig(),
            perceptual: L.Perceptual | None = None, mask: torch.Tensor | None = None,
            identity: ImageLoss | None = None, progress: Progress | None = None,
            init_ws: torch.Tensor | None = None) -> Projection:
    """Project ``target`` images [B, C, H, W] in [-1, 1] into ``G``'s W (``cfg.mode='w'``) or W+ space.

    ``identity`` is an optional ``img -> [B]`` loss (e.g. 1 − cosine of face embeddings) weighted
    by ``cfg.identity_weight``. ``init_ws`` [B, num_ws, D] replaces ``w_avg`` as the start (an
    encoder's output: the projector then refines it). ``G`` is not modified. Returns the W+
    latents and noise maps.
    """
    _check_target(G, target, mask)
    t0 = time.perf_counter()
    device, batch = target.device, target.shape[0]
    target = target.detach().to(torch.float32)
    if init_ws is None or cfg.w_noise > 0:  # the mean start and the latent noise need the mapping's statistics
        w_avg, w_std = w_stats(G, cfg.w_avg_samples, cfg.seed)
    else:
        w_avg, w_std = G.w_avg.reshape(1, 1, -1).to(torch.float32), 0.0
    w_opt = start_latent(G, init_ws, batch, cfg.mode, w_avg.to(device)).requires_grad_(True)
    noise = [buf.detach().to(device, torch.float32).expand(batch, 1, *buf.shape).clone()
             for buf in G.noise_buffers().values()]
    for n in noise:
        n.requires_grad_(cfg.optimize_noise)
    params = [w_opt] + (noise if cfg.optimize_noise else [])
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999))
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    G.requires_grad_(False)
    history: list[dict[str, float]] = []
    for step in range(cfg.steps):
        t = step / cfg.steps
        scale = w_std * cfg.w_noise * max(0.0, 1.0 - t / cfg.w_noise_ramp) ** 2 if cfg.w_noise_ramp > 0 else 0.0
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(t, cfg.lr_rampup, cfg.lr_rampdown)
        w_noise = torch.randn(w_opt.shape, generator=gen, device=device) * scale
        ws = (w_opt + w_noise).expand(-1, G.num_ws, -1)
        img = synthesize(G, ws, noise)
        parts = reconstruction_loss(img, target, perceptual, cfg.perceptual_weight, cfg.pixel_weight, mask)
        total = cfg.perceptual_weight * parts.get("perceptual", 0) + cfg.pixel_weight * parts.get("pixel", 0)
        if identity is not None and cfg.identity_weight > 0:
            parts["identity"] = identity(img)
            total = total + cfg.identity_weight * parts["identity"]
        if cfg.optimize_noise and cfg.noise_reg > 0 and noise:  # StyleGAN3 networks have no noise maps
            parts["noise_reg"] = noise_regularizer(noise)
            total = total + cfg.noise_reg * parts["noise_reg"]
        opt.zero_grad(set_to_none=True)
        total.sum().backward()
        opt.step()
        if cfg.optimize_noise:
            _normalize_noise_(noise)
        record = {k: float(v.detach().mean()) for k, v in parts.items()}
        record.update(step=step, total=float(total.detach().mean()))
        history.append(record)
        if progress is not None:
            progress(step + 1, cfg.steps, record)
    ws = w_opt.detach().expand(-1, G.num_ws, -1).contiguous()
    return Projection(ws, [n.detach() for n in noise], history, time.perf_counter() - t0)


def pivotal_tuning(G: Generator, ws: torch.Tensor, noise: list[torch.Tensor] | None, target: torch.Tensor,
                   cfg: PTIConfig = PTIConfig(), perceptual: L.Perceptual | None = None,
                   mask: torch.Tensor | None = None, progress: Progress | None = None
                   ) -> tuple[Generator, list[dict[str, float]]]:
    """Fine-tune a copy of ``G``'s synthesis network so ``G(ws, noise)`` reproduces ``target`` (PTI).

    The pivot latents and noise stay fixed; the mapping network is untouched. Returns the tuned
    copy (``G`` itself is not modified) and the loss history.
    """
    _check_target(G, target, mask)
    tuned = copy.deepcopy(G)
    tuned.requires_grad_(False)
    tuned.synthesis.requires_grad_(True)
    params = [p for p in tuned.synthesis.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999))
    target = target.detach().to(torch.float32)
    ws, noise = ws.detach(), None if noise is None else [n.detach() for n in noise]
    history: list[dict[str, float]] = []
    for step in range(cfg.steps):
        img = synthesize(tuned, ws, noise)
        parts = reconstruction_loss(img, target, perceptual, cfg.perceptual_weight, cfg.pixel_weight, mask)
        total = cfg.perceptual_weight * parts.get("perceptual", 0) + cfg.pixel_weight * parts.get("pixel", 0)
        opt.zero_grad(set_to_none=True)
        total.sum().backward()
        opt.step()
        record = {k: float(v.detach().mean()) for k, v in parts.items()}
        record.update(step=step, total=float(total.detach().mean()))
        history.append(record)
        if progress is not None:
            progress(step + 1, cfg.steps, record)
    tuned.requires_grad_(False)
    return tuned.eval(), history


@dataclass
class Inversion:
    """A projection, and the generator tuned around it when pivotal tuning ran."""

    projection: Projection
    tuned: Generator | None = None
    pti_history: list[dict[str, float]] = field(default_factory=list)
    pti_seconds: float = 0.0


def invert(G: Generator, target: torch.Tensor, cfg: InvertConfig, pti: PTIConfig | None = None,
           perceptual: L.Perceptual | None = None, mask: torch.Tensor | None = None,
           identity: ImageLoss | None = None, progress: Progress | None = None,
           pti_progress: Progress | None = None, init_ws: torch.Tensor | None = None) -> Inversion:
    """:func:`project` (from ``init_ws`` when given), then :func:`pivotal_tuning` around the result when
    ``pti`` is given."""
    proj = project(G, target, cfg, perceptual, mask, identity, progress, init_ws)
    if pti is None:
        return Inversion(proj)
    t0 = time.perf_counter()
    tuned, history = pivotal_tuning(G, proj.ws, proj.noise, target, pti, perceptual, mask, pti_progress)
    return Inversion(proj, tuned, history, time.perf_counter() - t0)


def with_noise(G: Generator, noise: list[torch.Tensor]) -> Generator:
    """A copy of ``G`` whose stored constant noise maps are the given (single-image) noise maps.

    Used to render an inverted image with its optimised noise wherever the engine uses the
    generator's constant noise (e.g. the user's face as an InsetGAN inset).
    """
    bufs = G.noise_buffers()
    if len(noise) != len(bufs):
        raise InsetganError(f"need {len(bufs)} noise maps, got {len(noise)}")
    out = copy.deepcopy(G)
    named = dict(out.synthesis.named_buffers())
    for (name, buf), n in zip(bufs.items(), noise):
        if n.shape[0] != 1 and n.ndim == 4:
            raise InsetganError("with_noise takes the noise maps of one image")
        named[name].copy_(n.reshape(buf.shape))
    return out


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image of [B, C, H, W] images (``data_range`` 2 for [-1, 1])."""
    mse = (a.to(torch.float64) - b.to(torch.float64)).square().flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(data_range ** 2 / mse)


def quality(img: torch.Tensor, target: torch.Tensor, perceptual: L.Perceptual | None = None
            ) -> dict[str, list[float]]:
    """Reconstruction metrics per image: PSNR (dB), SSIM and the perceptual distance (when given)."""
    with torch.no_grad():
        out = {"psnr": [round(float(v), 3) for v in psnr(img, target)]}
        if min(img.shape[-2:]) >= 11:
            out["ssim"] = [round(float(v), 4) for v in ssim(img, target)]
        if perceptual is not None:
            out["perceptual"] = [round(float(v), 5) for v in perceptual(img, target)]
    return out
