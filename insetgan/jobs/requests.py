"""The compose / sample-bodies / refine-face jobs from their user-level inputs (paths, seeds, options).

A request names checkpoints (or built-in models) and photos; running it loads the networks,
embeds the user's selfie and outfit (reusing a cache folder), runs the job of
:mod:`insetgan.jobs.running` and returns its encoded files. The command line and any other front end
build a request with keywords and write the files where they like.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from insetgan.jobs import running as jobs
from insetgan.inversion.embedding import EmbedConfig, Embedded, embed_face, embed_outfit
from insetgan.errors import InsetganError
from insetgan.inversion.invert import InvertConfig, PTIConfig
from insetgan.io import MAX_SEED, versions
from insetgan.models import load_network
from insetgan.method.config import OptimConfig, load_config
from insetgan.inversion.perceptual import PerceptualChoice, load_perceptual
from insetgan.method.regions import Box

IDENTITY_WEIGHT = 0.5  # the identity loss weight of a selfie's or reference's embedding and of the joint optimisation


def embed_config(invert_steps: int = InvertConfig.steps, pti: bool = False, pti_steps: int = PTIConfig.steps,
                 identity_weight: float = IDENTITY_WEIGHT) -> EmbedConfig:
    """How the jobs embed a selfie, reference or outfit: the one constructor the command line and the page share."""
    return EmbedConfig(InvertConfig(mode="wplus", steps=invert_steps), PTIConfig(steps=pti_steps) if pti else None,
                       identity_weight=identity_weight)

log = logging.getLogger("insetgan")

CKPT_SUFFIXES = (".pkl", ".pt", ".pth", ".safetensors")


class Reporter(Protocol):
    """A progress callback that is closed when its loop ends (:class:`insetgan.progress.ProgressBar`)."""

    def __call__(self, step: int, total: int, values: dict[str, float]) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Callable[[str, "str | None"], Reporter]  # (description, one-time notice) -> reporter


@dataclass(frozen=True)
class ComposeRequest:
    """Everything ``compose`` and ``sample-bodies`` take, by name (``None``: not given)."""

    command: str = "compose"
    body: str = "default"
    face_net: str = "default"
    shoes_net: str | None = None
    body_sources: tuple[jobs.LatentSource, ...] = (jobs.LatentSource(seed=0),)
    face_source: jobs.LatentSource = jobs.LatentSource(seed=0, key="face")
    shoes_seed: int | None = None
    preset: str = "default"
    steps: int | None = None
    trunc: float = 0.7
    blend: str | None = None
    face_box: Box | None = None
    shoes_box: Box | None = None
    detector: str = "auto"
    device: torch.device = torch.device("cpu")
    cache_dir: Path | None = None
    keep_face: bool = False
    perceptual: str = "auto"
    weights: str | None = None
    face_photo: str | None = None
    outfit: str | None = None
    outfit_mask: str | None = None
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    identity_weight: float = IDENTITY_WEIGHT
    keep_best: bool = False


@dataclass
class RequestOutput:
    """A finished job: its files (name -> bytes, report.json included) and new inversion cache entries."""

    job: jobs.JobOutput
    cache_files: dict[str, bytes]


def parse_int(value: object, what: str) -> int:
    """An int from an int, a finite integral float, or the text of either; a one-line error otherwise."""
    number: object = None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value.strip())
        with contextlib.suppress(ValueError):
            number = float(value)
    elif isinstance(value, float):
        number = value
    if isinstance(number, float) and math.isfinite(number) and number.is_integer():
        return int(number)
    raise InsetganError(f"{what} must be a whole number, got {str(value)[:40]!r}")


def whole_number(value: object, what: str, lo: int, hi: int) -> int:
    """``value`` (see :func:`parse_int`) as an int in ``lo..hi``; a one-line error otherwise."""
    number = parse_int(value, what)
    if not lo <= number <= hi:
        raise InsetganError(f"{what} must be in {lo}..{hi}, got {number}")
    return number


def check_seed(seed: object, what: str) -> int:
    """``seed`` as a valid seed (a whole number in 0..MAX_SEED); a one-line error naming ``what`` otherwise."""
    return whole_number(seed, what, 0, MAX_SEED)


def check_photo(path: str | None, option: str) -> str | None:
    """``path`` when it names an existing photo; one-line errors for checkpoints and missing files."""
    if path is None:
        return None
    if Path(path).suffix.lower() in CKPT_SUFFIXES:
        raise InsetganError(f"{option} takes a photo, not a checkpoint (give generators with --body/--face-net)")
    if not Path(path).is_file():
        raise InsetganError(f"{option}: photo not found: {path}")
    return path


def resolve_config(preset: str, steps: int | None, blend: str | None) -> OptimConfig:
    """The optimisation config of a preset (or config file), rescaled to ``steps``, with another blend."""
    cfg = load_config(preset)
    if steps is not None:
        cfg = cfg.with_steps(steps)
    if blend is not None:
        cfg = dataclasses.replace(cfg, blend=blend)
    return cfg


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


def load_generator_for(spec: str, dev: torch.device, option: str, role: str) -> tuple[Any, dict[str, Any]]:
    """A composition network (a checkpoint or the built-in model of ``role``) and its report entry."""
    ckpt, info = load_network(spec, dev, option, role)
    if ckpt.generator.c_dim:
        raise InsetganError(f"{option}: conditional networks are not supported for composition")
    return ckpt, info


def report_head(command: str, dev: torch.device, inputs: dict[str, Any], load_s: float, **extra: Any
                ) -> dict[str, Any]:
    """The first fields of a job report: command, inputs, device, load time, versions."""
    return {"command": command, "inputs": inputs, "device": str(dev), **extra,
            "timings_s": {"load": round(load_s, 4)}, "versions": versions()}


def user_face(photo: str, G: Any, perceptual: PerceptualChoice, cfg: EmbedConfig, identity_weight: float,
              cache_dir: Path | None, dev: torch.device, what: str, progress: ProgressFactory
              ) -> tuple[Embedded, jobs.UserFace]:
    """Align + invert the user's selfie (reusing ``cache_dir``): the embedding and the user's face for the job."""
    from insetgan.inversion.identity import load_mobilefacenet

    net = load_mobilefacenet(device=dev) if identity_weight > 0 else None
    bar = progress(f"invert {what}", perceptual.notice)
    try:
        emb, metric_img, identity = embed_face(photo, G, cfg, perceptual.fn, cache_dir, dev, bar, identity_net=net)
    finally:
        bar.close()
    log.info("selfie inverted (PSNR %.2f dB, %s)", emb.info["metrics"]["inverted"]["psnr"][0],
             "cached" if emb.info.get("cache", {}).get("hit") else f"{emb.info['seconds']:.1f} s")
    return emb, jobs.UserFace(identity, metric_img, identity_weight)


def run_compose_request(req: ComposeRequest, progress: ProgressFactory) -> RequestOutput:
    """Load, embed and compose: the files of a ``compose`` / ``sample-bodies`` job."""
    cfg = resolve_config(req.preset, req.steps, req.blend)
    dev = req.device
    t0 = time.perf_counter()
    body_ck, body_info = load_generator_for(req.body, dev, "--body", "body")
    face_ck, face_info = load_generator_for(req.face_net, dev, "--face-net", "face")
    inputs: dict[str, Any] = {"body": body_info, "face": face_info}
    shoes_G, shoes_source = None, None
    if req.shoes_net is not None:
        shoes_ck, inputs["shoes"] = load_generator_for(req.shoes_net, dev, "--shoes-net", "shoes")
        shoes_G = shoes_ck.generator
        shoes_source = jobs.LatentSource(seed=req.shoes_seed if req.shoes_seed is not None else 0, key="shoes")
    elif req.shoes_box is not None or req.shoes_seed is not None:
        raise InsetganError("--shoes-box/--shoes-seed need --shoes-net CKPT")
    pc = load_perceptual(req.perceptual, req.weights, dev, warn=False)
    body_G, face_G, user = body_ck.generator, face_ck.generator, None
    face_source, sources = req.face_source, list(req.body_sources)
    cache_files: dict[str, bytes] = {}
    outfit, outfit_mask = None, None
    if req.face_photo is not None:
        emb, user = user_face(req.face_photo, face_G, pc, req.embed, req.identity_weight, req.cache_dir, dev, "face",
                              progress)
        face_G, inputs["face_photo"] = emb.G, emb.info
        face_source = jobs.LatentSource(ws=emb.ws, label=req.face_photo, key="face")
        cache_files.update(emb.cache_files)
    if req.outfit is not None:
        bar = progress("invert outfit", pc.notice if req.face_photo is None else None)
        try:
            emb = embed_outfit(req.outfit, req.outfit_mask, body_G, req.embed, pc.fn, req.cache_dir, dev, bar)
        finally:
            bar.close()
        body_G, inputs["outfit"] = emb.G, emb.info
        outfit, outfit_mask = emb.target, emb.mask
        cfg = outfit_config(cfg)
        cache_files.update(emb.cache_files)
        sources = [jobs.LatentSource(ws=emb.ws, label=req.outfit)]
    head = report_head(req.command, dev, inputs, time.perf_counter() - t0,
                       latents={"body": [s.describe() for s in sources], "face": face_source.describe(),
                                **({"shoes": shoes_source.describe()} if shoes_source else {})},
                       truncation_psi=req.trunc)
    priors = jobs.region_priors(dict(body_ck.metadata))
    head["region_priors"] = {k: list(v) for k, v in priors.items()} or "built-in defaults"
    inp = jobs.ComposeInputs(body_G, face_G, tuple(sources), face_source, shoes_G, shoes_source, req.trunc,
                             req.face_box, req.shoes_box, req.detector, user, priors, outfit, outfit_mask)
    bar = progress(req.command, pc.notice if req.face_photo is None and req.outfit is None else None)
    try:
        out = jobs.run_compose(inp, cfg, dev, head, pc.fn, pc.name, progress=bar, keep_face=req.keep_face,
                              keep_best=req.keep_best)
    finally:
        bar.close()
    return RequestOutput(out, cache_files)


@dataclass(frozen=True)
class RefineRequest:
    """Everything ``refine-face`` takes, by name (``None``: not given)."""

    image: str
    face_net: str = "default"
    reference: str | None = None
    face_source: jobs.LatentSource | None = None
    search: int = 16
    preset: str = "default"
    steps: int | None = None
    trunc: float = 0.7
    blend: str | None = None
    face_box: Box | None = None
    device: torch.device = torch.device("cpu")
    cache_dir: Path | None = None
    perceptual: str = "auto"
    weights: str | None = None
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    identity_weight: float = IDENTITY_WEIGHT
    keep_best: bool = False


def run_refine_request(req: RefineRequest, progress: ProgressFactory) -> RequestOutput:
    """Load, embed the reference selfie (if any) and refine the face of an image: the files of ``refine-face``."""
    cfg = resolve_config(req.preset, req.steps, req.blend)
    reference = check_photo(req.reference, "--reference")
    if reference is not None and req.face_source is not None:
        raise InsetganError("give either --reference PHOTO or --face-seed/--face-latent, not both")
    dev = req.device
    t0 = time.perf_counter()
    img = jobs.load_image(req.image, dev)
    face_ck, face_info = load_generator_for(req.face_net, dev, "--face-net", "face")
    pc = load_perceptual(req.perceptual, req.weights, dev, warn=False)
    inputs: dict[str, Any] = {"image": {"path": str(req.image), "sha256": jobs.sha256(req.image),
                                        "size": [img.shape[-2], img.shape[-1]]}, "face": face_info}
    face_G, face_src, user, cache_files = face_ck.generator, req.face_source, None, {}
    if reference is not None:
        emb, user = user_face(reference, face_G, pc, req.embed, req.identity_weight, req.cache_dir, dev, "reference",
                              progress)
        face_G, inputs["face_photo"], cache_files = emb.G, emb.info, emb.cache_files
        face_src = jobs.LatentSource(ws=emb.ws, label=reference, key="face")
    head = report_head("refine-face", dev, inputs, time.perf_counter() - t0, truncation_psi=req.trunc)
    bar = progress("refine-face", pc.notice if reference is None else None)
    try:
        out = jobs.run_refine_face(img, face_G, face_src, req.face_box, cfg, head, trunc=req.trunc,
                                   search_seeds=tuple(range(req.search)), perceptual=pc.fn, perceptual_name=pc.name,
                                   progress=bar, user_face=user, keep_best=req.keep_best)
    finally:
        bar.close()
    return RequestOutput(out, cache_files)
