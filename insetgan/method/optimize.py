"""Joint latent optimisation of a canvas generator and its inset generators (InsetGAN).

:func:`optimize` is a pure function of its inputs: generators are only read (their weights
and noise buffers are never changed), start latents are copied, and the result carries the
optimised W+ latents, the images rendered from them with the same constant noise used while
optimising, the boxes, and a per-step loss history.

Latents are parametrised as W+ = w + δ (w [B, 1, D] shared by all layers, δ [B, L, D] per
layer) so the regulariser can keep w near the generator's average and the layers close to
each other. Every generator has its own Adam with its own learning rate; a *stage* says which
roles (``canvas``, ``insets``) are optimised, jointly or alternating every N steps.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from insetgan.errors import InsetganError
from insetgan.eval.seams import seam_score
from insetgan.inversion.perceptual import l1_ssim
from insetgan.method import losses as L
from insetgan.method.blend import blend
from insetgan.method.boxes import BoxProvider, TrackConfig, track
from insetgan.method.config import OptimConfig, Stage
from insetgan.method.regions import Box, box_mask, crop, paste
from insetgan.networks.generator import Generator

log = logging.getLogger(__name__)

@dataclass
class CanvasInput:
    """The canvas: a generator with start latents ``ws`` [B, L, D], or a fixed ``image`` [1|B, C, H, W]."""

    G: Generator | None = None
    ws: torch.Tensor | None = None
    image: torch.Tensor | None = None


@dataclass
class InsetInput:
    """One inset generator with start latents, a box per candidate and an optional box provider.

    ``reference`` [1|B, C, h, w] is what L_face keeps the inset interior close to (default: its
    start image). ``provider`` re-estimates the box on the canvas during tracking stages.
    ``identity`` is an optional ``inset image -> [B]`` loss (e.g. 1 − cosine to the user's face
    embedding), weighted by ``face_identity`` of the inset weights.
    """

    name: str
    G: Generator
    ws: torch.Tensor
    boxes: Sequence[Box]
    provider: BoxProvider | None = None
    reference: torch.Tensor | None = None
    identity: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass
class Result:
    """What :func:`optimize` returns (tensors on the CPU-or-device they were made on, detached)."""

    canvas_ws: torch.Tensor | None
    inset_ws: dict[str, torch.Tensor]
    canvas_start: torch.Tensor
    canvas: torch.Tensor
    insets_start: dict[str, torch.Tensor]
    insets: dict[str, torch.Tensor]
    boxes_start: dict[str, list[Box]]
    boxes: dict[str, list[Box]]
    history: list[dict[str, float]] = field(default_factory=list)
    box_events: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    inset_ws_start: dict[str, torch.Tensor] = field(default_factory=dict)


def split_wplus(ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """W+ [B, L, D] → (w [B, 1, D] = layer mean, δ [B, L, D] = ws − w)."""
    w = ws.mean(1, keepdim=True)
    return w, ws - w


def lr_factor(t: float, rampup: float, rampdown: float) -> float:
    """Learning-rate multiplier at stage progress ``t`` in [0, 1): linear ramp-up, cosine ramp-down."""
    f = min(1.0, t / rampup) if rampup > 0 else 1.0
    if rampdown > 0:
        f *= 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / rampdown))
    return f


def render(G: Generator, ws: torch.Tensor) -> torch.Tensor:
    """Synthesise with the stored constant noise (the same noise while optimising and for the final render)."""
    return G.synthesis(ws, noise_mode="const", fused_modconv=False)


def crop_boxes(canvas: torch.Tensor, boxes: Sequence[Box], size: tuple[int, int]) -> torch.Tensor:
    """Per-candidate crop of a [B, C, H, W] canvas under ``boxes[b]`` to ``size``."""
    if all(b == boxes[0] for b in boxes):
        return crop(canvas, boxes[0], size)
    return torch.cat([crop(canvas[i:i + 1], b, size) for i, b in enumerate(boxes)])


def outside_mask(height: int, width: int, boxes_per_inset: Sequence[Sequence[Box]], device: torch.device
                 ) -> torch.Tensor:
    """[B, 1, H, W]: 1 where no inset box covers the canvas (the region L_body keeps)."""
    n = len(boxes_per_inset[0])
    masks = []
    for i in range(n):
        m = torch.ones(1, 1, height, width, device=device)
        for boxes in boxes_per_inset:
            m = m * (1 - box_mask(height, width, boxes[i], device=device))
        masks.append(m)
    return torch.cat(masks)


def loss_parts(canvas: torch.Tensor, insets: dict[str, torch.Tensor], boxes: dict[str, Sequence[Box]],
               cfg: OptimConfig, perceptual: L.Perceptual | None, canvas_ref: torch.Tensor | None = None,
               inset_refs: dict[str, torch.Tensor] | None = None, need_body: bool = False,
               need_face: bool = False, identities: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None
               ) -> dict[str, torch.Tensor]:
    """All image loss terms per candidate ([B] each), named ``inset:term`` (and ``body_*``).

    ``identities`` (inset name → ``img -> [B]``) add ``inset:face_identity`` terms.
    """
    parts: dict[str, torch.Tensor] = {}
    for name, img in insets.items():
        cropped = crop_boxes(canvas, boxes[name], tuple(img.shape[-2:]))
        for k, v in L.coarse_loss(cropped, img, perceptual, cfg.coarse_size).items():
            parts[f"{name}:{k}"] = v
        metric = cfg.border_metric
        strip = min(cfg.border_px, min(img.shape[-2:]) // 2 - 1)
        for k, v in L.border_loss(cropped, img, strip, metric, perceptual).items():
            parts[f"{name}:{k}"] = v
        if need_face and inset_refs is not None and name in inset_refs:
            interior = 1 - L.border_mask(img.shape[-2], img.shape[-1], strip, img.device)
            for k, v in L.region_loss(img, inset_refs[name].expand_as(img), interior, perceptual, "face").items():
                parts[f"{name}:{k}"] = v
        if identities and identities.get(name) is not None:
            parts[f"{name}:face_identity"] = identities[name](img)
    if need_body and canvas_ref is not None:
        mask = outside_mask(canvas.shape[-2], canvas.shape[-1], [boxes[n] for n in insets], canvas.device)
        parts.update(L.region_loss(canvas, canvas_ref.expand_as(canvas), mask, perceptual, "body"))
    return parts


def _role_total(parts: dict[str, torch.Tensor], weights: L.LossWeights, role: str) -> torch.Tensor:
    keep = {k: v for k, v in parts.items() if not (role == "canvas" and k.split(":")[-1].startswith("face_"))
            and not (role == "insets" and k.startswith("body_"))}
    return L.weighted_total(keep, weights)


def _check_inputs(canvas: CanvasInput, insets: Sequence[InsetInput]) -> tuple[int, torch.device]:
    if (canvas.G is None) == (canvas.image is None):
        raise InsetganError("the canvas needs either a generator with start latents or a fixed image")
    if not insets:
        raise InsetganError("at least one inset is needed")
    if canvas.G is not None:
        if canvas.ws is None:
            raise InsetganError("the canvas generator needs start latents")
        device, batch, channels = canvas.ws.device, canvas.ws.shape[0], canvas.G.img_channels
    else:
        img = canvas.image
        if img.ndim != 4:
            raise InsetganError(f"the canvas image must be [N, C, H, W], got {list(img.shape)}")
        device, batch, channels = img.device, max(img.shape[0], insets[0].ws.shape[0]), img.shape[1]
    names = [i.name for i in insets]
    if len(set(names)) != len(names):
        raise InsetganError(f"inset names must be unique, got {names}")
    for ins in insets:
        if ins.ws.device != device:
            raise InsetganError(f"inset {ins.name!r} latents are on {ins.ws.device} but the canvas is on {device}")
        if next(ins.G.parameters()).device != device:
            raise InsetganError(f"inset {ins.name!r} generator is on a different device than the canvas ({device})")
        if ins.G.img_channels != channels:
            raise InsetganError(f"inset {ins.name!r} has {ins.G.img_channels} channel(s) but the canvas has {channels}")
        if ins.ws.shape[0] != batch or len(ins.boxes) != batch:
            raise InsetganError(f"inset {ins.name!r}: need {batch} start latents and boxes (one per candidate)")
    if canvas.G is not None and next(canvas.G.parameters()).device != device:
        raise InsetganError(f"the canvas generator is not on {device}, where its latents are")
    return batch, device


class _Latents:
    """Trainable W+ = w + δ of one generator, its Adam, its base lr and a render cache."""

    def __init__(self, G: Generator, ws: torch.Tensor, lr: float, trust: float = 0.0) -> None:
        w, delta = split_wplus(ws.detach().to(torch.float32))
        self.G, self.lr, self.trust = G, lr, trust
        self.w0, self.delta0 = w, delta
        self.w = w.clone().requires_grad_(True)
        self.delta = delta.clone().requires_grad_(True)
        self.opt = torch.optim.Adam([self.w, self.delta], lr=lr, betas=(0.9, 0.999))
        self._cache: torch.Tensor | None = None

    def ws(self) -> torch.Tensor:
        return self.w + self.delta

    def image(self, grad: bool) -> torch.Tensor:
        if grad:
            self._cache = None
            return render(self.G, self.ws())
        if self._cache is None:
            with torch.no_grad():
                self._cache = render(self.G, self.ws())
        return self._cache

    def reg(self, w_mean: float, w_delta: float) -> torch.Tensor:
        parts = L.reg_loss(self.w, self.delta, self.G.w_avg.to(self.w))
        return w_mean * parts["reg_mean"] + w_delta * parts["reg_delta"]

    def step(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self._cache = None
        if self.trust > 0:
            self._project()

    def _project(self) -> None:
        """Pull W+ back onto the trust region: RMS(ws − ws_start) <= trust per candidate."""
        with torch.no_grad():
            dw, dd = self.w - self.w0, self.delta - self.delta0
            rms = (dw + dd).flatten(1).square().mean(1).sqrt()
            scale = (self.trust / rms.clamp_min(1e-12)).clamp(max=1.0).view(-1, 1, 1)
            self.w.copy_(self.w0 + dw * scale)
            self.delta.copy_(self.delta0 + dd * scale)


@dataclass
class _Run:
    """The state of one :func:`optimize` call: trainable latents, current boxes, fixed starts, records."""

    canvas: _Latents | None  # None: the canvas is a fixed image
    insets: dict[str, _Latents]
    boxes: dict[str, list[Box]]
    providers: dict[str, BoxProvider | None]
    identities: dict[str, Callable[[torch.Tensor], torch.Tensor]]
    canvas_start: torch.Tensor
    insets_start: dict[str, torch.Tensor]
    inset_refs: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0


def _set_up(canvas: CanvasInput, insets: Sequence[InsetInput], cfg: OptimConfig, batch: int,
            device: torch.device) -> _Run:
    """Trainable copies of the start latents, the start images and the references L_face keeps."""
    lat_c = _Latents(canvas.G, canvas.ws, cfg.lr_canvas, cfg.canvas_trust) if canvas.G is not None else None
    lat_i = {ins.name: _Latents(ins.G, ins.ws, cfg.lr_inset) for ins in insets}
    identities = {ins.name: ins.identity for ins in insets if ins.identity is not None
                  and cfg.inset_weights.face_identity > 0}
    with torch.no_grad():
        canvas_start = lat_c.image(False) if lat_c else canvas.image.to(torch.float32).expand(batch, -1, -1, -1)
        insets_start = {n: lat.image(False) for n, lat in lat_i.items()}
    inset_refs = {ins.name: (ins.reference if ins.reference is not None else insets_start[ins.name]).to(device)
                  for ins in insets}
    return _Run(lat_c, lat_i, {ins.name: list(ins.boxes) for ins in insets}, {ins.name: ins.provider for ins in insets},
                identities, canvas_start, insets_start, inset_refs)


def _active_roles(stage: Stage, roles: Sequence[str], t: int) -> set[str]:
    """The roles stage step ``t`` optimises: all of them (joint) or one at a time, switching every N steps."""
    if stage.schedule == "joint":
        return set(roles)
    return {roles[(t // stage.switch_every) % len(roles)]}


def _tracks_at(stage: Stage, t: int) -> bool:
    """Whether the boxes are re-estimated on the canvas before stage step ``t``."""
    return bool(stage.track_every) and t > 0 and t % stage.track_every == 0 and \
        (stage.track_until is None or t <= stage.track_until)


def _backward(run: _Run, parts: dict[str, torch.Tensor], leaves: tuple[torch.Tensor, dict[str, torch.Tensor]],
              images: tuple[torch.Tensor, dict[str, torch.Tensor]], active: set[str], cfg: OptimConfig) -> float:
    """Each active role's loss gradient (from the detached image leaves) and regulariser into its latents; the total."""
    (c_leaf, i_leaf), (c_img, i_imgs) = leaves, images
    total = 0.0
    if "canvas" in active:
        lc = _role_total(parts, cfg.canvas_weights, "canvas")
        g = torch.autograd.grad(lc.sum(), c_leaf, retain_graph="insets" in active)[0]
        reg = run.canvas.reg(cfg.reg_mean_canvas, cfg.reg_delta_canvas)
        torch.autograd.backward([c_img, reg.sum()], [g, None])
        total += float(lc.detach().mean() + reg.detach().mean())
    if "insets" in active:
        li = _role_total(parts, cfg.inset_weights, "insets")
        grads = torch.autograd.grad(li.sum(), list(i_leaf.values()), allow_unused=True)
        outs, gs = [], []
        for (n, lat), gi in zip(run.insets.items(), grads):
            reg = lat.reg(cfg.reg_mean_inset, cfg.reg_delta_inset)
            outs += [i_imgs[n], reg.sum()]
            gs += [gi if gi is not None else torch.zeros_like(i_imgs[n]), None]
            total += float(reg.detach().mean())
        torch.autograd.backward(outs, gs)
        total += float(li.detach().mean())
    return total


def _step(run: _Run, stage: Stage, t: int, active: set[str], cfg: OptimConfig,
          perceptual: L.Perceptual | None) -> dict[str, float]:
    """One optimisation step of ``stage`` (step ``t``) on the ``active`` roles; its record, also kept in the history."""
    c_img = run.canvas.image("canvas" in active) if run.canvas else run.canvas_start
    i_imgs = {n: lat.image("insets" in active) for n, lat in run.insets.items()}
    if _tracks_at(stage, t):
        _retrack(c_img.detach(), run.boxes, run.providers, cfg.track, run.events, run.step)
    c_leaf = c_img.detach().requires_grad_("canvas" in active)
    i_leaf = {n: v.detach().requires_grad_("insets" in active) for n, v in i_imgs.items()}
    cw, iw = cfg.canvas_weights, cfg.inset_weights
    parts = loss_parts(c_leaf, i_leaf, run.boxes, cfg, perceptual, run.canvas_start, run.inset_refs,
                       need_body="canvas" in active and (cw.body_l1 > 0 or cw.body_perceptual > 0),
                       need_face="insets" in active and (iw.face_l1 > 0 or iw.face_perceptual > 0),
                       identities=run.identities if "insets" in active else None)
    record: dict[str, float] = {k: float(v.detach().mean()) for k, v in parts.items()}
    total = _backward(run, parts, (c_leaf, i_leaf), (c_img, i_imgs), active, cfg)
    lr_f = lr_factor(t / max(stage.steps, 1), cfg.lr_rampup, cfg.lr_rampdown)
    if "canvas" in active:
        run.canvas.step(cfg.lr_canvas * lr_f)
    if "insets" in active:
        for lat in run.insets.values():
            lat.step(cfg.lr_inset * lr_f)
    record.update(step=run.step, stage=stage.name, active="+".join(sorted(active)), total=total)
    run.history.append(record)
    run.step += 1
    return record


def _result(run: _Run, insets: Sequence[InsetInput], seconds: float) -> Result:
    """The final latents and their images (rendered with the same constant noise), boxes and records."""
    with torch.no_grad():
        final_canvas = run.canvas.image(False) if run.canvas else run.canvas_start
        final_insets = {n: lat.image(False) for n, lat in run.insets.items()}
    return Result(
        canvas_ws=run.canvas.ws().detach() if run.canvas else None,
        inset_ws={n: lat.ws().detach() for n, lat in run.insets.items()},
        canvas_start=run.canvas_start.detach(), canvas=final_canvas.detach(),
        insets_start={n: v.detach() for n, v in run.insets_start.items()},
        insets={n: v.detach() for n, v in final_insets.items()},
        boxes_start={ins.name: list(ins.boxes) for ins in insets}, boxes=run.boxes,
        history=run.history, box_events=run.events, seconds=seconds, steps=run.step,
        inset_ws_start={ins.name: ins.ws.detach() for ins in insets})


def optimize(canvas: CanvasInput, insets: Sequence[InsetInput], cfg: OptimConfig,
             perceptual: L.Perceptual | None = l1_ssim,
             progress: Callable[[int, int, dict[str, float]], None] | None = None) -> Result:
    """Jointly optimise the canvas and inset latents so each inset fits seamlessly into the canvas.

    ``canvas``: a generator + start W+ [B, L, D] (B independent candidates), or a fixed image
    (only the insets move, e.g. face refinement of a photo). ``insets``: generators with start
    W+ and a box per candidate. ``perceptual`` is any ``(a, b) -> [B]`` callable (``None`` turns
    the perceptual terms off). ``progress(step, total, losses)`` is called after every step.
    """
    batch, device = _check_inputs(canvas, insets)
    t_start = time.perf_counter()
    run = _set_up(canvas, insets, cfg, batch, device)
    for stage in cfg.stages:
        roles = [r for r in stage.optimize if r != "canvas" or run.canvas is not None]
        if not roles:
            log.info("stage %s skipped: it optimises only the canvas, which is a fixed image", stage.name)
            continue
        for t in range(stage.steps):
            record = _step(run, stage, t, _active_roles(stage, roles, t), cfg, perceptual)
            if progress is not None:
                progress(run.step, cfg.steps, record)
    return _result(run, insets, time.perf_counter() - t_start)


def _retrack(canvas_img: torch.Tensor, boxes: dict[str, list[Box]], providers: dict[str, BoxProvider | None],
             cfg: TrackConfig, events: list[dict[str, Any]], step: int) -> None:
    """Re-estimate every tracked box on the current canvas (in place), logging each outcome."""
    for name, provider in providers.items():
        if provider is None:
            continue
        for i, prev in enumerate(boxes[name]):
            try:
                detected = provider(canvas_img[i:i + 1])
                error = None
            except Exception as exc:  # noqa: BLE001 - a detector failure must never stop the run
                detected, error = None, f"{type(exc).__name__}: {exc}"
            box, status = track(prev, detected, cfg)
            if detected is not None and status == "updated":
                H, W = canvas_img.shape[-2:]
                if not box.inside(H, W):
                    box, status = prev, "rejected"
            boxes[name][i] = box
            event = {"step": step, "inset": name, "candidate": i, "status": status}
            if detected is not None:
                event["detected"] = [round(v, 2) for v in (detected.x, detected.y, detected.w, detected.h)]
            if error:
                event["error"] = error
            if status != "updated":
                log.debug("box %s[%d] at step %d: %s", name, i, step, status)
            events.append(event)


def composite(canvas: torch.Tensor, insets: dict[str, torch.Tensor], boxes: dict[str, Sequence[Box]],
              method: str = "laplacian", feather: float = 0.125) -> torch.Tensor:
    """Blend every inset into the canvas under its box; pixels outside all boxes are the canvas, exactly.

    ``feather`` is the width of the blend ramp inside the box edge, as a fraction of the box's
    shorter side.
    """
    out = []
    H, W = canvas.shape[-2:]
    for i in range(canvas.shape[0]):
        img = canvas[i:i + 1]
        for name, inset in insets.items():
            box = boxes[name][i]
            pasted, cover = paste(img, inset[i:i + 1], box)
            pasted = pasted * cover + img * (1 - cover)
            support = (box_mask(H, W, box, device=canvas.device) > 0).to(img)
            mask = support if method == "hard" else box_mask(H, W, box, feather * min(box.w, box.h), canvas.device)
            img = img + (blend(img, pasted, mask * (cover > 0), method) - img) * support
        out.append(img)
    return torch.cat(out)


def naive_paste(canvas: torch.Tensor, insets: dict[str, torch.Tensor], boxes: dict[str, Sequence[Box]]
                ) -> torch.Tensor:
    """The baseline: each inset resized into its box and hard-pasted (what the official scripts do)."""
    return composite(canvas, insets, boxes, method="hard")


def evaluate(canvas: torch.Tensor, insets: dict[str, torch.Tensor], boxes: dict[str, Sequence[Box]],
             composite_img: torch.Tensor, cfg: OptimConfig, perceptual: L.Perceptual | None
             ) -> list[dict[str, Any]]:
    """Per-candidate metrics: unweighted L_coarse and L_border (L1, whatever the preset) per inset and the seam score."""
    fixed = dataclasses.replace(cfg, border_metric="l1")
    with torch.no_grad():
        parts = loss_parts(canvas, insets, boxes, fixed, perceptual)
    rows = []
    for i in range(canvas.shape[0]):
        row: dict[str, Any] = {k: round(float(v[i]), 6) for k, v in parts.items()}
        for name in insets:
            try:
                row[f"{name}:seam"] = round(seam_score(composite_img[i:i + 1], boxes[name][i]), 4)
            except ValueError:
                row[f"{name}:seam"] = None
        rows.append(row)
    return rows
