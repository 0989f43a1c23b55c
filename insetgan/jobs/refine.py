"""The refine-face job: the face of an existing image refined, or replaced by the user's own.

Only the face latent moves (coarse + border losses against the image); the result is blended
back and the pixels outside the face box are the input image's own.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from insetgan import io as iio
from insetgan.devices import torch_device
from insetgan.editing.apply import apply_w_edits, style_edits
from insetgan.editing.directions import LoadedEdit
from insetgan.errors import InsetganError
from insetgan.eval.keep import Given, Judges
from insetgan.inversion.perceptual import PerceptualChoice, l1_ssim, load_perceptual
from insetgan.jobs.outputs import package_outputs
from insetgan.jobs.progress import ProgressFactory, Reporter
from insetgan.jobs.report import JobOutput, RequestOutput, complete
from insetgan.jobs.requests import RefineRequest
from insetgan.jobs.setup import (UserFace, check_encoder_used, embed_user_face, face_provider, initial_boxes,
                                 load_generator_for)
from insetgan.jobs.sources import LatentSource, batch_of, load_image, start_latents
from insetgan.jobs.start_edits import edits_report, load_for
from insetgan.method import losses as L
from insetgan.method.boxes import FACE_PRIOR, clamp_box
from insetgan.method.config import OptimConfig
from insetgan.method.optimize import CanvasInput, InsetInput, crop_boxes, optimize, render
from insetgan.method.regions import Box
from insetgan.networks.generator import Generator
from insetgan.sampling import z_from_seed


@dataclass(frozen=True)
class RefineInputs:
    """Resolved inputs of refine-face: the image [1, 3, H, W], the face generator and how the face starts.

    ``face_source`` None: the best of ``search_seeds`` (coarse L1 against the image's face);
    ``face_box`` None: dlib finds the face (``detector``); ``user_face``: the reference selfie;
    ``face_edits`` (``--face-edit``): directions of the face's start, read for ``face``.
    """

    image: torch.Tensor
    face: Generator
    face_source: LatentSource | None = None
    face_box: Box | None = None
    trunc: float = 0.7
    search_seeds: Sequence[int] = tuple(range(16))
    detector: str = "auto"
    user_face: UserFace | None = None
    face_edits: tuple[LoadedEdit, ...] = ()
    judges: Judges | None = None  # the job's dlib models: the reference's alignment, the face box, the measures


def pick_face_start(G: Generator, canvas: torch.Tensor, box: Box, seeds: Sequence[int], trunc: float,
                    cfg: OptimConfig) -> tuple[int, torch.Tensor, list[float]]:
    """Among ``seeds``, the face whose image best matches the canvas crop (coarse L1): (seed, ws, all costs)."""
    device = canvas.device
    with torch.no_grad():
        z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds]).to(device)
        ws = G.mapping(z, None, truncation_psi=trunc)
        imgs = render(G, ws)
        target = crop_boxes(canvas[:1], [box], tuple(imgs.shape[-2:])).expand_as(imgs)
        cost = L.coarse_loss(target, imgs, None, cfg.coarse_size)["coarse_l1"]
    best = int(cost.argmin())
    return seeds[best], ws[best:best + 1], [round(float(c), 5) for c in cost]


def _face_box(inp: RefineInputs) -> tuple[list[Box], list[str]]:
    """The face box: the one given, else dlib's (an error when there is no face)."""
    if inp.face_box is not None:
        return initial_boxes(inp.image, inp.face_box, None, FACE_PRIOR, "face")
    provider = face_provider("dlib" if inp.detector == "auto" else inp.detector,
                             inp.judges.detector if inp.judges else None)
    box = provider(inp.image) if provider is not None else None
    if box is None:
        raise InsetganError("no face found in the image: give --face-box x,y,w,h")
    H, W = inp.image.shape[-2:]
    return [clamp_box(box, H, W)], ["face box detected with dlib"]


def _refine_config(cfg: OptimConfig, user: UserFace | None) -> OptimConfig:
    """The config of the face's optimisation: no L_face without a reference; with one, L_face, the identity
    loss, and a coarse loss on the image's low frequencies only (16 px) so lighting and pose adapt."""
    w = cfg.inset_weights
    if user is None:
        return dataclasses.replace(cfg, inset_weights=dataclasses.replace(w, face_l1=0.0, face_perceptual=0.0))
    return dataclasses.replace(cfg, coarse_size=min(cfg.coarse_size, 16), inset_weights=dataclasses.replace(
        w, face_l1=max(w.face_l1, 1.0), face_perceptual=max(w.face_perceptual, 0.4),
        face_identity=user.weight if user.identity is not None else 0.0))


def refine_candidates(inp: RefineInputs, cfg: OptimConfig, perceptual: L.Perceptual | None = l1_ssim,
                      perceptual_name: str = "l1-ssim", progress: Reporter | None = None,
                      keep_best: bool = False) -> JobOutput:
    """Refine the face of a fixed image: only the face latent moves (coarse + border against the image).

    With ``inp.user_face`` (``refine-face --reference``) the face is replaced by the user's: the
    start latent is their inverted face, and L_face and the identity loss keep it theirs. The
    edits of ``inp`` change the chosen start (style-space ones act while the face renders). The
    output's report holds the job's sections.
    """
    image, face = inp.image, inp.face
    if face.img_channels != image.shape[1]:
        raise InsetganError(f"the face generator has {face.img_channels} channel(s) but the image has {image.shape[1]}")
    if next(face.parameters()).device != image.device:
        raise InsetganError(f"the face generator is not on {image.device}, where the image is")
    boxes, notes = _face_box(inp)
    if inp.face_source is None:
        seed, ws, costs = pick_face_start(face, image, boxes[0], list(inp.search_seeds), inp.trunc, cfg)
        start = {"searched_seeds": list(inp.search_seeds), "coarse_l1": costs, "chosen_seed": seed}
    else:
        ws = batch_of(start_latents(face, inp.face_source, inp.trunc, image.device), 1, "face")
        start = inp.face_source.describe()
    user = inp.user_face
    cfg = _refine_config(cfg, user)
    identity = user.identity if user is not None else None
    with style_edits(face, inp.face_edits):
        res = optimize(CanvasInput(image=image), [InsetInput("face", face, apply_w_edits(ws, inp.face_edits), boxes,
                                                             identity=identity)], cfg, perceptual, progress)
    given = Given(face_photo=user.photo if user is not None else None, original=image)
    out = package_outputs(res, cfg, perceptual, perceptual_name, given=given, original=image, keep_best=keep_best,
                          judges=inp.judges)
    out.report.update(face_start=start, box_notes=notes, edits=edits_report(face=inp.face_edits))
    return out


def _load(req: RefineRequest, dev: torch.device, pc: PerceptualChoice, cache_dir: Path | None,
          progress: ProgressFactory) -> tuple[RefineInputs, dict[str, Any], dict[str, bytes]]:
    """The image, the face network and the embedded reference: the job's inputs, report inputs and new
    cache entries."""
    img = load_image(req.image, dev)
    face_ck, face_info = load_generator_for(req.face_net, dev, "--face-net", "face")
    inputs: dict[str, Any] = {"image": {"path": str(req.image), "sha256": iio.sha256(req.image),
                                        "size": [img.shape[-2], img.shape[-1]]}, "face": face_info}
    inp = RefineInputs(img, face_ck.generator, req.face_source, req.face_box_value, req.trunc,
                       tuple(range(req.search)),
                       face_edits=load_for(face_ck.generator, req.edit_list("face_edits"), "--face-edit"),
                       judges=Judges.load())
    if req.reference is None:
        check_encoder_used(req.encoder, [])
        return inp, inputs, {}
    emb, user = embed_user_face(req.reference, inp.face, pc, req.embed_config, cache_dir, dev, "reference", progress,
                                face_info["path"], inp.judges.detector if inp.judges else None)
    inputs["face_photo"] = emb.info
    check_encoder_used(req.encoder, [emb.info])
    inp = dataclasses.replace(inp, face=emb.G, user_face=user,
                              face_source=LatentSource(ws=emb.ws, label=req.reference, key="face"))
    return inp, inputs, emb.cache_files


def run_refine(req: RefineRequest, progress: ProgressFactory, cache_dir: Path | None = None) -> RequestOutput:
    """Load, embed the reference selfie (if any) and refine the face of an image: the files of ``refine-face``."""
    dev = torch_device(req.device)
    t0 = time.perf_counter()
    pc = load_perceptual(req.perceptual, req.weights, dev, warn=False)
    cfg = req.optim_config()
    inp, inputs, cache_files = _load(req, dev, pc, cache_dir, progress)
    load_s = time.perf_counter() - t0
    bar = progress("refine-face", pc.notice if req.reference is None else None)
    try:
        out = refine_candidates(inp, cfg, pc.fn, pc.name, progress=bar, keep_best=req.keep_best)
    finally:
        bar.close()
    return RequestOutput(complete(out, req, dev, inputs, load_s, truncation_psi=req.trunc), cache_files)
