"""Training an image → W+ encoder for a fixed generator (pSp/e4e recipe): settings, state and one step.

Each step takes ``batch_fake`` samples of the generator, whose W+ is known (z → w, truncated
towards ``w_avg`` by a ψ drawn in ``[psi_min, psi_max]``, style-mixed at a random row with
probability ``style_mixing``), and ``batch_real`` photos of the prepared dataset (x-flipped at
random). The encoder's W+ is rendered by the frozen generator (its constant noise); the loss is
the latent error on the samples, the pixel (L2) and deep perceptual error on every image, the
MobileFaceNet identity loss (1 − cosine) on the photos of face datasets, and e4e's L2 penalty on the per-row
deltas. Rows unlock one by one, every ``unlock_kimg`` (e4e's progressive training): before its
turn a row repeats row 0.

Everything random in a step comes from a generator seeded by ``(seed, step)``, so a resumed run
takes exactly the steps an uninterrupted one would.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from insetgan.errors import InsetganError
from insetgan.inversion.identity import IdentityTarget, embed, identity_loss, warp_five
from insetgan.io import atomic_write_bytes, encode
from insetgan.jobs.options import check_values, option
from insetgan.limits import MAX_SEED, Range
from insetgan.networks.encoder import Encoder, EncoderConfig, build_encoder, config_for
from insetgan.networks.encoder_files import network_sha256
from insetgan.networks.generator import Generator
from insetgan.networks.torch_files import load_torch_file

STATE_FORMAT = "insetgan-encoder-training"
STATE_VERSION = 1
MAX_KIMG = 100_000.0
# Settings a resumed run must share with the saved one (they fix the networks or the random draws).
_RESUME_FIXED = ("batch_fake", "batch_real", "seed", "width", "input_scale", "holdout", "xflip")


@dataclass(frozen=True)
class EncoderTrainConfig:
    """Encoder training settings; every number has its range (the command line shows the same)."""

    kimg: float = option(100.0, "Train until this many thousand images were shown.", range=Range(0.001, MAX_KIMG))
    batch_fake: int = option(4, "Generator samples per step (their W+ is known: latent loss).",
                             range=Range(0, 256, integer=True))
    batch_real: int = option(4, "Dataset photos per step.", range=Range(0, 256, integer=True))
    lr: float = option(1e-4, "Adam learning rate.", range=Range(0.0, 1.0, lo_open=True))
    psi_min: float = option(0.5, "Samples: smallest truncation ψ.", range=Range(0.0, 2.0))
    psi_max: float = option(1.0, "Samples: largest truncation ψ.", range=Range(0.0, 2.0))
    style_mixing: float = option(0.5, "Samples: probability of a style-mixed W+.", range=Range(0.0, 1.0))
    latent_weight: float = option(1.0, "Weight of the samples' latent (W+) error.", range=Range(0.0, 1e4))
    pixel_weight: float = option(1.0, "Weight of the pixel (L2) error.", range=Range(0.0, 1e4))
    perceptual_weight: float = option(0.2, "Weight of the EfficientNet-Lite0 feature distance.", range=Range(0.0, 1e4))
    perceptual_size: int = option(64, "Smallest input side of the feature distance (pixels).",
                                  range=Range(32, 1024, integer=True))  # the deep distance's smallest input side
    identity_weight: float = option(0.5, "Face datasets: weight of the MobileFaceNet identity loss.",
                                    range=Range(0.0, 1e4))
    delta_weight: float = option(0.05, "Weight of e4e's L2 penalty on the per-row deltas (keeps W+ near W).",
                                 range=Range(0.0, 1e4))
    unlock_kimg: float = option(2.0, "Progressive training: one more W+ row gets its own delta every K kimg "
                                "(0: all at once).",
                                range=Range(0.0, MAX_KIMG))
    snapshot_kimg: float = option(4.0, "Snapshot (state, encoder, grid, metrics) every K kimg.",
                                  range=Range(0.001, MAX_KIMG))
    holdout: int = option(64, "Dataset images held out for the snapshots' numbers (every 97th from the first).",
                          range=Range(0, 100_000, integer=True))
    grid: int = option(8, "Input | reconstruction pairs per grid row.", range=Range(1, 64, integer=True))
    width: int = option(128, "Channels of the feature pyramid and heads.", range=Range(8, 512, integer=True))
    input_scale: float = option(2.0, "Encoder input size as a multiple of the generator's image (then a multiple "
                                "of 32).",
                                range=Range(0.5, 8.0))
    seed: int = option(0, "Seed of the heads and of every step's random draws.", range=Range(0, MAX_SEED, integer=True))
    xflip: bool = option(True, "Mirror dataset photos at random.")

    def __post_init__(self) -> None:
        check_values(self)
        if self.batch_fake + self.batch_real < 1:
            raise InsetganError("batch_fake + batch_real must be at least 1")
        if self.psi_min > self.psi_max:
            raise InsetganError(f"psi_min {self.psi_min:g} is above psi_max {self.psi_max:g}")

    @property
    def batch(self) -> int:
        """Images per step."""
        return self.batch_fake + self.batch_real

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)


@dataclass
class EncoderTrainState:
    """The encoder, its optimiser and the progress of a run."""

    encoder: Encoder
    opt: torch.optim.Adam
    generator_sha256: str
    step: int = 0
    nimg: int = 0


@dataclass(frozen=True, eq=False)
class TrainContext:
    """What a step reads: the frozen generator, the training photos (uint8 [N, C, H, W]), the losses."""

    G: Generator
    reals: torch.Tensor
    perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
    identity_net: torch.nn.Module | None
    face_points: torch.Tensor | None  # [5, 2] where the FFHQ-aligned faces' eyes, nose, mouth lie
    device: torch.device


def new_state(cfg: EncoderTrainConfig, G: Generator, device: torch.device, pretrained: bool = True
              ) -> EncoderTrainState:
    """A fresh encoder for ``G`` (pretrained backbone, seeded heads) and its Adam optimiser."""
    torch.manual_seed(cfg.seed)
    encoder = build_encoder(config_for(G, cfg.width, cfg.input_scale), G, pretrained).to(device).train()
    opt = torch.optim.Adam(encoder.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    return EncoderTrainState(encoder, opt, network_sha256(G))


def active_rows(cfg: EncoderTrainConfig, nimg: int, num_ws: int) -> int:
    """How many W+ rows have their own delta after ``nimg`` images: one more every ``unlock_kimg``."""
    if cfg.unlock_kimg == 0:
        return num_ws
    return min(num_ws, 1 + int(nimg // (cfg.unlock_kimg * 1000)))


def sample_ws(G: Generator, z: torch.Tensor, z2: torch.Tensor, psi: torch.Tensor, cutoff: torch.Tensor
              ) -> torch.Tensor:
    """W+ [N, num_ws, D] of latents ``z``, truncated by ``psi`` [N], rows from ``cutoff`` [N] on taken from ``z2``."""
    w_avg = G.w_avg.view(1, 1, -1)
    ws = w_avg.lerp(G.mapping(z, None), psi.view(-1, 1, 1))
    ws2 = w_avg.lerp(G.mapping(z2, None), psi.view(-1, 1, 1))
    row = torch.arange(G.num_ws, device=z.device).view(1, -1, 1)
    return torch.where(row >= cutoff.view(-1, 1, 1), ws2, ws)


def draw_batch(cfg: EncoderTrainConfig, step: int, ctx: TrainContext) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The step's images [B, C, H, W] in [-1, 1] (samples first) and the samples' true W+ (None without samples)."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    G, dev, nf, nr = ctx.G, ctx.device, cfg.batch_fake, cfg.batch_real
    z, z2 = torch.randn(nf, G.z_dim, generator=gen), torch.randn(nf, G.z_dim, generator=gen)
    psi = cfg.psi_min + (cfg.psi_max - cfg.psi_min) * torch.rand(nf, generator=gen)
    cut = torch.randint(1, max(G.num_ws, 2), (nf,), generator=gen)
    cutoff = torch.where(torch.rand(nf, generator=gen) < cfg.style_mixing, cut, torch.full_like(cut, G.num_ws))
    idx = torch.randint(max(ctx.reals.shape[0], 1), (nr,), generator=gen)
    flip = (torch.rand(nr, generator=gen) < 0.5) & cfg.xflip
    parts, ws_true = [], None
    if nf:
        with torch.no_grad():
            ws_true = sample_ws(G, z.to(dev), z2.to(dev), psi.to(dev), cutoff.to(dev))
            parts.append(G.synthesis(ws_true, noise_mode="const"))
    if nr:
        real = ctx.reals[idx].to(dev, torch.float32) / 127.5 - 1
        parts.append(torch.where(flip.to(dev).view(-1, 1, 1, 1), real.flip(-1), real))
    return torch.cat(parts), ws_true


def face_identity(ctx: TrainContext, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """1 − cosine of MobileFaceNet embeddings of reconstructions and their targets, per image (None: no faces)."""
    if ctx.identity_net is None or ctx.face_points is None:
        return None
    with torch.no_grad():
        emb = embed(ctx.identity_net, warp_five(target, ctx.face_points))
    return identity_loss(ctx.identity_net, recon, IdentityTarget(emb, ctx.face_points))


def encoder_losses(state: EncoderTrainState, cfg: EncoderTrainConfig, ctx: TrainContext, images: torch.Tensor,
                   ws_true: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The loss terms of one batch, each a mean over its images (differentiable in the encoder)."""
    G = ctx.G
    ws, deltas = state.encoder.predict(images, active_rows(cfg, state.nimg, G.num_ws))
    recon = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    out = {"pixel": (recon - images).square().mean(), "delta": deltas.square().mean()}
    if ws_true is not None:
        out["latent"] = (ws[: ws_true.shape[0]] - ws_true).square().mean()
    if ctx.perceptual is not None and cfg.perceptual_weight > 0:
        out["perceptual"] = ctx.perceptual(recon, images).mean()
    if cfg.identity_weight > 0 and cfg.batch_real > 0:
        ident = face_identity(ctx, recon[cfg.batch_fake:], images[cfg.batch_fake:])
        if ident is not None:
            out["identity"] = ident.mean()
    return out


def train_step(state: EncoderTrainState, cfg: EncoderTrainConfig, ctx: TrainContext) -> dict[str, float]:
    """One optimiser step on one batch; returns the loss terms and the total."""
    images, ws_true = draw_batch(cfg, state.step, ctx)
    state.encoder.train()
    parts = encoder_losses(state, cfg, ctx, images, ws_true)
    weights = {"latent": cfg.latent_weight, "pixel": cfg.pixel_weight, "perceptual": cfg.perceptual_weight,
               "identity": cfg.identity_weight, "delta": cfg.delta_weight}
    total = sum(weights[k] * v for k, v in parts.items())
    state.opt.zero_grad(set_to_none=True)
    total.backward()
    state.opt.step()
    state.step += 1
    state.nimg += cfg.batch
    out = {k: float(v.detach()) for k, v in parts.items()}
    if not all(math.isfinite(v) for v in out.values()):
        raise InsetganError(f"the encoder's loss is not finite at step {state.step} ({out}): lower --lr")
    return {**out, "total": float(total.detach())}


def save_state(state: EncoderTrainState, cfg: EncoderTrainConfig, path: Path) -> None:
    """Write the resumable training state atomically (tensors, numbers and strings only)."""
    sd = {"format": STATE_FORMAT, "version": STATE_VERSION, "encoder": state.encoder.state_dict(),
          "opt": state.opt.state_dict(), "step": state.step, "nimg": state.nimg,
          "config": json.dumps(cfg.to_dict()), "encoder_config": state.encoder.cfg.to_json(),
          "generator_sha256": state.generator_sha256}
    atomic_write_bytes(path, encode(lambda buf: torch.save(sd, buf)))


def load_state(path: str | Path, cfg: EncoderTrainConfig, G: Generator, device: torch.device) -> EncoderTrainState:
    """Resume: a saved state for the same generator and settings; this run's lr; one-line errors otherwise."""
    sd = load_torch_file(path)
    if not isinstance(sd, dict) or sd.get("format") != STATE_FORMAT or sd.get("version") != STATE_VERSION:
        raise InsetganError(f"--resume: {path} is not an insetgan encoder training state")
    state = new_state(cfg, G, device, pretrained=False)
    if sd.get("generator_sha256") != state.generator_sha256:
        raise InsetganError(f"--resume: {path} trains an encoder for another generator")
    try:
        saved = json.loads(sd["config"])
        same_shape = EncoderConfig.from_dict(json.loads(sd["encoder_config"])) == state.encoder.cfg
    except (KeyError, TypeError, ValueError) as exc:  # InsetganError included: a damaged config
        raise InsetganError(f"--resume: {path} is damaged ({str(exc).splitlines()[0][:160]})") from None
    if not same_shape:
        raise InsetganError(f"--resume: {path} holds an encoder of another shape (--width, --input-scale)")
    changed = [k for k in _RESUME_FIXED if not isinstance(saved, dict) or saved.get(k) != getattr(cfg, k)]
    if changed:
        raise InsetganError("--resume: the run was trained with different "
                            + ", ".join(f"{k} ({saved.get(k) if isinstance(saved, dict) else '?'})" for k in changed))
    try:
        state.encoder.load_state_dict(sd["encoder"])
        state.opt.load_state_dict(sd["opt"])
        state.step, state.nimg = int(sd["step"]), int(sd["nimg"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InsetganError(f"--resume: {path} is damaged ({str(exc).splitlines()[0][:160]})") from None
    for group in state.opt.param_groups:
        group["lr"] = cfg.lr
    return state
