"""The compose and sample-bodies jobs: a request in, the job's files out.

:func:`run_compose` loads the networks, embeds the user's selfie and outfit (reusing a cache
folder), and runs :func:`compose_candidates`, which optimises every candidate in one batch
and packages the files (:mod:`insetgan.jobs.outputs`). Nothing here writes a file.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from insetgan.devices import torch_device
from insetgan.editing.apply import apply_w_edits, style_edits
from insetgan.editing.directions import LoadedEdit
from insetgan.eval.keep import Given, Judges
from insetgan.inversion.embedding import embed_outfit
from insetgan.inversion.perceptual import PerceptualChoice, l1_ssim, load_perceptual
from insetgan.jobs.outputs import package_outputs
from insetgan.jobs.progress import ProgressFactory, Reporter
from insetgan.jobs.report import JobOutput, RequestOutput, complete
from insetgan.jobs.requests import ComposeRequest, SampleBodiesRequest
from insetgan.jobs.setup import (UserFace, check_encoder_used, embed_user_face, face_provider, initial_boxes,
                                 load_generator_for, shoe_boxes)
from insetgan.jobs.sources import LatentSource, batch_of, start_latents
from insetgan.jobs.start_edits import edits_report, load_for
from insetgan.method import losses as L
from insetgan.method.boxes import FACE_PRIOR, SHOES_PRIOR
from insetgan.method.config import OptimConfig
from insetgan.method.optimize import CanvasInput, InsetInput, optimize, render
from insetgan.method.regions import Box
from insetgan.models import region_priors
from insetgan.networks.generator import Generator

OUTFIT_TRUST = 0.10  # the canvas trust radius (RMS in W+) when the body starts from the user's outfit photo
OUTFIT_BODY = 5.0  # L_body (L1) weight then; the perceptual part gets a tenth of the L1 weight less


def outfit_config(cfg: OptimConfig) -> OptimConfig:
    """The config for a canvas inverted from the user's outfit photo: the canvas moves only as far as the seam needs.

    A trust region bounds the canvas latent's distance from its start (unless the preset sets
    its own ``canvas_trust``) and L_body gets at least ``OUTFIT_BODY`` (measured by
    ``scripts/bench_keep.py``; docs/keeping.md).
    """
    w = cfg.canvas_weights
    weights = dataclasses.replace(w, body_l1=max(w.body_l1, OUTFIT_BODY),
                                  body_perceptual=max(w.body_perceptual, OUTFIT_BODY / 5))
    return dataclasses.replace(cfg, canvas_trust=cfg.canvas_trust or OUTFIT_TRUST, canvas_weights=weights)


@dataclass(frozen=True)
class ComposeInputs:
    """Resolved inputs of compose / sample-bodies (generators already loaded)."""

    body: Generator
    face: Generator
    body_sources: tuple[LatentSource, ...]
    face_source: LatentSource
    shoes: Generator | None = None
    shoes_source: LatentSource | None = None
    trunc: float = 0.7
    face_box: Box | None = None
    shoes_box: Box | None = None
    detector: str = "auto"
    user_face: UserFace | None = None
    judges: Judges | None = None  # the job's dlib models: the selfie's alignment, the face box, the measures
    priors: dict[str, tuple[float, float, float, float]] = dataclasses.field(default_factory=dict)
    outfit: torch.Tensor | None = None  # the outfit photo's person crop [1, 3, H, W] (--outfit)
    outfit_mask: torch.Tensor | None = None  # its person mask [1, 1, H, W] in [0, 1] (None: the whole crop)
    canvas_edits: tuple[LoadedEdit, ...] = ()  # --edit: directions of the body's start (read for ``body``)
    face_edits: tuple[LoadedEdit, ...] = ()  # --face-edit: directions of the face's start (read for ``face``)


def _insets(inp: ComposeInputs, canvas0: torch.Tensor, cfg: OptimConfig, batch: int, device: torch.device
            ) -> tuple[list[InsetInput], list[str], str]:
    """The face (and shoes) insets of every candidate with their start boxes, the box notes and the face
    box's provider."""
    face_ws = batch_of(apply_w_edits(start_latents(inp.face, inp.face_source, inp.trunc, device), inp.face_edits),
                       batch, "face")
    provider = face_provider(inp.detector, inp.judges.detector if inp.judges else None) if inp.face_box is None \
        else None
    face_boxes, notes = initial_boxes(canvas0, inp.face_box, provider, inp.priors.get("face", FACE_PRIOR), "face")
    user = inp.user_face
    insets = [InsetInput("face", inp.face, face_ws, face_boxes, provider,
                         identity=user.identity if user is not None else None)]
    if inp.shoes is not None:
        shoes_ws = batch_of(start_latents(inp.shoes, inp.shoes_source, inp.trunc, device), batch, "shoes")
        with torch.no_grad():
            shoes0 = render(inp.shoes, shoes_ws)
        sboxes, snotes = shoe_boxes(canvas0, shoes0, cfg, inp.shoes_box, inp.priors.get("shoes", SHOES_PRIOR))
        notes += snotes
        insets.append(InsetInput("shoes", inp.shoes, shoes_ws, sboxes))
    return insets, notes, "manual" if inp.face_box else (provider.name if provider else "fixed")


def compose_candidates(inp: ComposeInputs, cfg: OptimConfig, device: torch.device,
                       perceptual: L.Perceptual | None = l1_ssim, perceptual_name: str = "l1-ssim",
                       progress: Reporter | None = None, keep_face: bool = False, keep_best: bool = False
                       ) -> JobOutput:
    """Compose full bodies: one per body latent source (B candidates optimised in one batch).

    ``keep_face`` (sample-bodies) keeps every candidate's face close to the given face (L_face);
    otherwise the face weights of the preset apply as they are. ``keep_best`` returns the start
    face of a candidate whose face got worse (:func:`~insetgan.jobs.outputs.package_outputs`).
    The output's report holds the job's sections (no command, inputs or versions). The edits of
    ``inp`` (``--edit``, ``--face-edit``) change the body and face starts; their style-space
    parts act on the generators while the job renders and optimises.
    """
    body_ws = apply_w_edits(torch.cat([start_latents(inp.body, s, inp.trunc, device) for s in inp.body_sources]),
                            inp.canvas_edits)
    user = inp.user_face
    if keep_face or user is not None:
        w = cfg.inset_weights
        cfg = dataclasses.replace(cfg, inset_weights=dataclasses.replace(
            w, face_l1=max(w.face_l1, 2.0 * max(w.coarse_l1, 1e-3)), face_perceptual=max(w.face_perceptual, 0.4),
            face_identity=user.weight if user is not None and user.identity is not None else w.face_identity))
    with style_edits(inp.body, inp.canvas_edits), style_edits(inp.face, inp.face_edits):
        with torch.no_grad():
            canvas0 = render(inp.body, body_ws)
        insets, notes, face_provider_name = _insets(inp, canvas0, cfg, body_ws.shape[0], device)
        res = optimize(CanvasInput(G=inp.body, ws=body_ws), insets, cfg, perceptual, progress)
    given = Given(outfit=inp.outfit, outfit_mask=inp.outfit_mask, face_photo=user.photo if user is not None else None)
    out = package_outputs(res, cfg, perceptual, perceptual_name, given=given, keep_best=keep_best, judges=inp.judges)
    out.report.update(box_notes=notes, box_provider={"face": face_provider_name},
                      edits=edits_report(canvas=inp.canvas_edits, face=inp.face_edits))
    return out


@dataclass
class _Loaded:
    """A compose request's networks, embedded photos and report inputs, ready to optimise."""

    inp: ComposeInputs
    cfg: OptimConfig
    inputs: dict[str, Any]
    cache_files: dict[str, bytes]


def _networks(req: ComposeRequest | SampleBodiesRequest, dev: torch.device) -> tuple[ComposeInputs, dict[str, Any]]:
    """The job's inputs with its networks loaded (before any photo is embedded), and their report entries."""
    body_ck, body_info = load_generator_for(req.body, dev, "--body", "body")
    face_ck, face_info = load_generator_for(req.face_net, dev, "--face-net", "face")
    inputs: dict[str, Any] = {"body": body_info, "face": face_info}
    inp = ComposeInputs(body_ck.generator, face_ck.generator, req.body_sources, req.face_source, trunc=req.trunc,
                        face_box=req.face_box_value, detector=req.detector,
                        priors=region_priors(dict(body_ck.metadata)),
                        canvas_edits=load_for(body_ck.generator, req.edit_list("edits"), "--edit"),
                        face_edits=load_for(face_ck.generator, req.edit_list("face_edits"), "--face-edit"))
    if isinstance(req, ComposeRequest) and req.shoes_net is not None:
        shoes_ck, inputs["shoes"] = load_generator_for(req.shoes_net, dev, "--shoes-net", "shoes")
        inp = dataclasses.replace(inp, shoes=shoes_ck.generator, shoes_source=req.shoes_source,
                                  shoes_box=req.box("shoes_box"))
    return inp, inputs


def _load(req: ComposeRequest | SampleBodiesRequest, dev: torch.device, pc: PerceptualChoice,
          cache_dir: Path | None, progress: ProgressFactory) -> _Loaded:
    """Load the networks and embed the user's selfie and outfit (an outfit changes the config)."""
    cfg = req.optim_config()
    inp, inputs = _networks(req, dev)
    inp = dataclasses.replace(inp, judges=Judges.load())
    cache_files: dict[str, bytes] = {}
    if req.face_photo is not None:
        emb, user = embed_user_face(req.face_photo, inp.face, pc, req.embed_config, cache_dir, dev, "face", progress,
                                    inputs["face"]["path"], inp.judges.detector if inp.judges else None)
        inputs["face_photo"] = emb.info
        cache_files.update(emb.cache_files)
        inp = dataclasses.replace(inp, face=emb.G, user_face=user,
                                  face_source=LatentSource(ws=emb.ws, label=req.face_photo, key="face"))
    if isinstance(req, ComposeRequest) and req.outfit is not None:
        bar = progress("invert outfit", pc.notice if req.face_photo is None else None)
        try:
            emb = embed_outfit(req.outfit, req.outfit_mask, inp.body, req.embed_config, pc.fn, cache_dir, dev, bar,
                               inputs["body"]["path"])
        finally:
            bar.close()
        inputs["outfit"] = emb.info
        cache_files.update(emb.cache_files)
        inp = dataclasses.replace(inp, body=emb.G, outfit=emb.target, outfit_mask=emb.mask,
                                  body_sources=(LatentSource(ws=emb.ws, label=req.outfit),))
        cfg = outfit_config(cfg)
    check_encoder_used(req.encoder, [inputs.get("face_photo"), inputs.get("outfit")])
    return _Loaded(inp, cfg, inputs, cache_files)


def run_compose(req: ComposeRequest | SampleBodiesRequest, progress: ProgressFactory,
                cache_dir: Path | None = None) -> RequestOutput:
    """Load, embed and compose: the files of a ``compose`` / ``sample-bodies`` job (the inversion cache
    is read from ``cache_dir``; its new entries come back with the files)."""
    dev = torch_device(req.device)
    t0 = time.perf_counter()
    pc = load_perceptual(req.perceptual, req.weights, dev, warn=False)
    loaded = _load(req, dev, pc, cache_dir, progress)
    load_s = time.perf_counter() - t0
    inp = loaded.inp
    photos = req.face_photo is not None or isinstance(req, ComposeRequest) and req.outfit is not None
    bar = progress(req.command, None if photos else pc.notice)
    try:
        out = compose_candidates(inp, loaded.cfg, dev, pc.fn, pc.name, progress=bar,
                                 keep_face=isinstance(req, SampleBodiesRequest), keep_best=req.keep_best)
    finally:
        bar.close()
    latents = {"body": [s.describe() for s in inp.body_sources], "face": inp.face_source.describe(),
               **({"shoes": inp.shoes_source.describe()} if inp.shoes_source else {})}
    job = complete(out, req, dev, loaded.inputs, load_s, latents=latents, truncation_psi=req.trunc,
                   region_priors={k: list(v) for k, v in inp.priors.items()} or "built-in defaults")
    return RequestOutput(job, loaded.cache_files)
