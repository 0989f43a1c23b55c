"""One training step: non-saturating logistic loss, lazy R1, generator EMA, DiffAugment, data parallel.

One training step draws everything random for the *global* batch from a generator seeded by
``(seed, step)``: real indices and x-flips, latents, style-mixing cut-offs and augmentation
parameters. Each process takes its slice of that batch and processes it in chunks of
``batch_gpu``; every loss is a sum over samples divided by the global batch size, and gradients
are summed over processes (``all_reduce``) before each optimiser step. So a run on N processes
equals a single-process run with the same global batch and ``batch_gpu`` (to float rounding),
and a resumed run repeats exactly the steps an uninterrupted run would take.

Here: the step's random draws, the critics (each discriminator with its optimiser, view and loss),
the G and D phases and :func:`train_step`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from insetgan.errors import InsetganError
from insetgan.networks.discriminator import HINGE_ARCHITECTURES
from insetgan.networks.generator import Generator
from insetgan.networks.projected import ProjectedDiscriminator
from insetgan.train.augment import augment, draw_params, parse_policy
from insetgan.train.config import TrainConfig
from insetgan.train.data import ImageSet
from insetgan.train.distributed import rank_and_size, sum_gradients
from insetgan.train.face_window import window_gamma
from insetgan.train.state import TrainState, learning_rates


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
        sum_gradients(c.net)
        c.opt.step()
        c.opt.zero_grad(set_to_none=True)
        if isinstance(c.net, ProjectedDiscriminator):
            c.net.power_iteration()


def set_learning_rates(state: TrainState, cfg: TrainConfig) -> None:
    """Set every optimiser's lr to :func:`learning_rates` at ``state.nimg``."""
    lr_g, lr_d = learning_rates(cfg, state.nimg)
    for opt, lr in [(state.opt_G, lr_g)] + [(c.opt, lr_d) for c in _critics(state, cfg)]:
        for group in opt.param_groups:
            group["lr"] = lr


def _generator_step(state: TrainState, critics: list[_Critic], cfg: TrainConfig, r: _Draws, parts: list[slice],
                    policy: tuple[str, ...], device: torch.device) -> torch.Tensor:
    """The G phase of a step (non-saturating logistic loss, weighted over the critics) and the w_avg update;
    returns G's loss."""
    _, world = rank_and_size()
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
    sum_gradients(G)
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
    rank, world = rank_and_size()
    B = cfg.batch
    if B % world:
        raise InsetganError(f"--batch {B} must be divisible by the number of processes ({world})")
    local = B // world
    chunk = cfg.batch_gpu or local
    if local % chunk:
        raise InsetganError(f"the per-process batch {local} must be a multiple of --batch-gpu {chunk}")
    G = state.G
    set_learning_rates(state, cfg)
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
    # from reals, and the penalty at the recipe's gamma flattens it to chance instead (MODEL_CARD.md).
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
