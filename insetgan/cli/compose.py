"""The composition jobs: compose, sample-bodies, refine-face."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from insetgan import io as iio
from insetgan.jobs import running as jobs
from insetgan.cli.common import SEED, given, handle_errors, job_options, log, progress_bar, range_type, torch_device, \
    write_files
from insetgan.sampling import PSI_RANGE
from insetgan.limits import MAX_CANDIDATES as MAX_BODIES
from insetgan.method.losses import WEIGHT_RANGE
from insetgan.method.config import STEPS_RANGE
from insetgan.inversion.embedding import EmbedConfig
from insetgan.errors import InsetganError
from insetgan.inversion.invert import InvertConfig, PTIConfig
from insetgan.method.regions import Box
from insetgan.jobs.requests import (IDENTITY_WEIGHT, ComposeRequest, RefineRequest, RequestOutput, check_photo, check_seed,
                               embed_config, run_compose_request, run_refine_request)


DEFAULT_BODIES = 8


def _source(seed: int | None, latent: str | None, key: str, what: str, default_seed: int | None = None
            ) -> jobs.LatentSource | None:
    if seed is not None and latent is not None:
        raise InsetganError(f"give either --{what}-seed or --{what}-latent, not both")
    if latent is not None:
        return jobs.LatentSource(path=latent, key=key)
    if seed is None:
        if default_seed is None:
            return None
        seed = default_seed
    return jobs.LatentSource(seed=check_seed(seed, f"--{what}-seed"), key=key)


def _box(text: str | None, what: str) -> Box | None:
    if text is None:
        return None
    try:
        return Box.parse(text)
    except ValueError as exc:
        raise InsetganError(f"--{what}-box: {exc}") from None


def _engine_options(fn: Callable) -> Callable:
    options = [
        click.option("--preset", default="default", show_default=True, metavar="NAME|FILE",
                     help="default, paper, stylegan-human, or a JSON/YAML config file."),
        click.option("--steps", type=range_type(STEPS_RANGE), default=None,
                     help="Total steps (the preset's schedule is rescaled)."),
        click.option("--trunc", type=range_type(PSI_RANGE), default=0.7, show_default=True,
                     help="Truncation psi for seeds."),
        click.option("--blend", type=click.Choice(["hard", "feather", "laplacian"]), default=None,
                     help="Final composite (default: the preset's)."),
        click.option("--face-box", default=None, metavar="x,y,w,h", help="Face box in canvas pixels (skips detection)."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return job_options(fn)


def _invert_options(fn: Callable) -> Callable:
    options = [
        click.option("--invert-steps", type=click.IntRange(1, 100000), default=InvertConfig.steps, show_default=True,
                     help="Projector steps for --face/--outfit/--reference photos."),
        click.option("--pti", is_flag=True, help="Pivotal tuning after projecting a photo (sharper, slower)."),
        click.option("--pti-steps", type=click.IntRange(1, 100000), default=PTIConfig.steps, show_default=True),
        click.option("--identity-weight", type=range_type(WEIGHT_RANGE), default=IDENTITY_WEIGHT, show_default=True,
                     help="Weight of the MobileFaceNet identity loss keeping the user's face."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _embed_config(invert_steps: int, pti: bool, pti_steps: int, identity_weight: float) -> EmbedConfig:
    if given("pti_steps") and not pti:
        raise InsetganError("--pti-steps needs --pti")
    return embed_config(invert_steps, pti, pti_steps, identity_weight)


def _progress_factory(mode: str) -> Callable[[str, str | None], Any]:
    """Progress bars for a job's loops, showing the total and the coarse and border losses."""
    def keys(k: str) -> bool:
        return k == "total" or k.endswith("coarse_l1") or k.endswith(":border")

    return lambda desc, notice: progress_bar(desc, mode, notice, keys)


def headline(report: dict[str, Any]) -> str:
    """The job's headline numbers: seam, body drift, outfit distance, face score and identity (first candidate)."""
    before, after = report["metrics"]["before"][0], report["metrics"]["after"][0]
    n = len(report["metrics"]["after"])

    def pair(key: str, label: str) -> str | None:
        a, b = before.get(key), after.get(key)
        if key not in after:
            return None
        fmt = lambda v: "none" if v is None else f"{v:.3f}"  # noqa: E731
        return f"{label} {fmt(a)} -> {fmt(b)}"

    parts = [pair("face:seam", "seam"), f"body drift {after['body_drift_l1']:.3f}",
             pair("outfit_l1", "outfit L1"), pair("face:score", "face score"), pair("face:identity", "identity")]
    text = ", ".join(p for p in parts if p)
    return text + (f" (candidate 0 of {n})" if n > 1 else "")


def _write_job(res: RequestOutput, outdir: str) -> None:
    """Write a job's files (and new inversion cache entries into OUTDIR/cache), all at the end."""
    files = {f"cache/{name}": data for name, data in res.cache_files.items()}
    files.update(res.job.files)
    path = write_files(outdir, files)
    rep = res.job.report
    log.info("wrote %d files to %s (%d steps in %.1f s)", len(res.job.files), path, rep["steps"],
             rep["timings_s"]["optimize"])
    log.info("%s", headline(rep))


_KEEP_BEST = click.option("--keep-best", is_flag=True,
                          help="Return the start face where the result's face got worse (lower dlib score, "
                               "or not the reference person).")
_DETECTOR = click.option("--detector", type=click.Choice(jobs.DETECTORS), default="auto", show_default=True,
                         help="Face box: dlib detection (auto: when installed), or the fixed prior.")
_BODY = click.option("--body", default="default", show_default=True, metavar="CKPT",
                     help="Canvas (full-body) generator; 'default' = the built-in model.")
_FACE_NET = click.option("--face-net", default="default", show_default=True, metavar="CKPT",
                         help="Face generator; 'default' = the built-in model.")


@click.command()
@_BODY
@_FACE_NET
@click.option("--face", "face_photo", default=None, metavar="PHOTO", help="Your selfie: the result gets your face.")
@click.option("--outfit", default=None, metavar="PHOTO", help="A full-body photo whose clothes the body starts from.")
@click.option("--outfit-mask", default=None, metavar="MASK", help="Person mask of --outfit (non-zero = person).")
@click.option("--shoes-net", default=None, metavar="CKPT", help="Optional shoes generator ('default' = built-in).")
@click.option("--body-seed", type=SEED, default=None, help="Body seed (default 0).")
@click.option("--body-latent", default=None, metavar="FILE", help="Body W/W+ (.npy, or latents.npz of a run).")
@click.option("--face-seed", type=SEED, default=None, help="Face seed (default 0).")
@click.option("--face-latent", default=None, metavar="FILE", help="Face W/W+ (.npy, or latents.npz of a run).")
@click.option("--shoes-seed", type=SEED, default=None, help="Shoes seed (default 0).")
@click.option("--shoes-box", default=None, metavar="x,y,w,h", help="Shoes box (default: prior + local search).")
@_DETECTOR
@_KEEP_BEST
@_invert_options
@_engine_options
@handle_errors
def compose(body: str, face_net: str, face_photo: str | None, outfit: str | None, outfit_mask: str | None,
            shoes_net: str | None, body_seed: int | None, body_latent: str | None, face_seed: int | None,
            face_latent: str | None, shoes_seed: int | None, shoes_box: str | None, detector: str, keep_best: bool,
            invert_steps: int, pti: bool, pti_steps: int, identity_weight: float, preset: str,
            steps: int | None, trunc: float, blend: str | None, face_box: str | None, perceptual: str,
            weights: str | None, device: str, outdir: str, progress_mode: str) -> None:
    """Compose one full body: canvas and insets optimised jointly so the seams vanish.

    With --face, your selfie is aligned, inverted into the face generator (cached in
    OUTDIR/cache) and kept yours by L_face and an identity loss; with --outfit, the body
    starts from your full-body photo.

    \b
    Examples:
      insetgan compose --face selfie.jpg --outdir out/me          # the built-in models
      insetgan compose --body body.pkl --face-net ffhq.pkl --face selfie.jpg --outdir out/me
      insetgan compose --body stylegan_human_v2_1024.pkl --face-net ffhq.pkl \\
          --body-seed 3 --face-seed 7 --outdir out/compose
    """
    face_photo, outfit = check_photo(face_photo, "--face"), check_photo(outfit, "--outfit")
    if face_photo is not None and (face_seed is not None or face_latent is not None):
        raise InsetganError("give either --face PHOTO or --face-seed/--face-latent, not both")
    if outfit is not None and (body_seed is not None or body_latent is not None):
        raise InsetganError("give either --outfit PHOTO or --body-seed/--body-latent, not both")
    if outfit_mask is not None and outfit is None:
        raise InsetganError("--outfit-mask needs --outfit PHOTO")
    req = ComposeRequest(
        command="compose", body=body, face_net=face_net, shoes_net=shoes_net,
        body_sources=(_source(body_seed, body_latent, "canvas", "body", default_seed=0),),
        face_source=_source(face_seed, face_latent, "face", "face", default_seed=0), shoes_seed=shoes_seed,
        preset=preset, steps=steps, trunc=trunc, blend=blend, face_box=_box(face_box, "face"),
        shoes_box=_box(shoes_box, "shoes"), detector=detector, device=torch_device(device),
        cache_dir=Path(outdir) / "cache", perceptual=perceptual, weights=weights, face_photo=face_photo,
        outfit=outfit, outfit_mask=outfit_mask, embed=_embed_config(invert_steps, pti, pti_steps, identity_weight),
        identity_weight=identity_weight, keep_best=keep_best)
    _write_job(run_compose_request(req, _progress_factory(progress_mode)), outdir)


@click.command("sample-bodies")
@_BODY
@_FACE_NET
@click.option("--face", "face_photo", default=None, metavar="PHOTO", help="Your selfie: every body gets your face.")
@click.option("--face-seed", type=SEED, default=None, help="Face seed (default 0).")
@click.option("--face-latent", default=None, metavar="FILE", help="Face W/W+ (.npy, or latents.npz of a run).")
@click.option("--num", type=click.IntRange(1, MAX_BODIES), default=None,
              help=f"Number of bodies  [default: {DEFAULT_BODIES}, or as many as --body-seeds lists]")
@click.option("--body-seeds", default=None, help=f"Body seeds, e.g. 10-17 (default 0..num-1; at most {MAX_BODIES}).")
@_DETECTOR
@_KEEP_BEST
@_invert_options
@_engine_options
@handle_errors
def sample_bodies(body: str, face_net: str, face_photo: str | None, face_seed: int | None, face_latent: str | None,
                  num: int | None, body_seeds: str | None, detector: str, keep_best: bool, invert_steps: int,
                  pti: bool, pti_steps: int,
                  identity_weight: float, preset: str, steps: int | None, trunc: float, blend: str | None,
                  face_box: str | None, perceptual: str, weights: str | None, device: str, outdir: str,
                  progress_mode: str) -> None:
    """Many bodies for one face, optimised together in one batch, each kept close to that face.

    \b
    Examples:
      insetgan sample-bodies --face selfie.jpg --num 8 --outdir out/bodies   # the built-in models
      insetgan sample-bodies --body body.pkl --face-net ffhq.pkl --face-seed 7 --outdir out/bodies
    """
    face_photo = check_photo(face_photo, "--face")
    if face_photo is not None and (face_seed is not None or face_latent is not None):
        raise InsetganError("give either --face PHOTO or --face-seed/--face-latent, not both")
    seeds = iio.parse_range(body_seeds, "seed", max_count=MAX_BODIES) if body_seeds else \
        list(range(num or DEFAULT_BODIES))
    if num is not None and body_seeds and num != len(seeds):
        raise InsetganError(f"--num {num} but --body-seeds lists {len(seeds)} seeds: give one of them")
    req = ComposeRequest(
        command="sample-bodies", body=body, face_net=face_net,
        body_sources=tuple(jobs.LatentSource(seed=s) for s in seeds),
        face_source=_source(face_seed, face_latent, "face", "face", default_seed=0), preset=preset, steps=steps,
        trunc=trunc, blend=blend, face_box=_box(face_box, "face"), detector=detector, device=torch_device(device),
        cache_dir=Path(outdir) / "cache", keep_face=True, perceptual=perceptual, weights=weights,
        face_photo=face_photo, embed=_embed_config(invert_steps, pti, pti_steps, identity_weight),
        identity_weight=identity_weight, keep_best=keep_best)
    _write_job(run_compose_request(req, _progress_factory(progress_mode)), outdir)


@click.command("refine-face")
@click.argument("image", metavar="IMAGE")
@_FACE_NET
@click.option("--reference", default=None, metavar="PHOTO", help="Your selfie: replace the face by yours.")
@click.option("--face-seed", type=SEED, default=None, help="Face start seed (default: best of --search seeds).")
@click.option("--face-latent", default=None, metavar="FILE", help="Face start W/W+ (.npy or latents.npz).")
@click.option("--search", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Seeds tried for the start face when no seed or latent is given.")
@_KEEP_BEST
@_invert_options
@_engine_options
@handle_errors
def refine_face(image: str, face_net: str, reference: str | None, face_seed: int | None, face_latent: str | None,
                search: int, keep_best: bool, invert_steps: int, pti: bool, pti_steps: int, identity_weight: float,
                preset: str,
                steps: int | None, trunc: float, blend: str | None, face_box: str | None, perceptual: str,
                weights: str | None, device: str, outdir: str, progress_mode: str) -> None:
    """Refine the face of an existing image (a photo or a generated body); no body generator needed.

    Only the face latent is optimised (coarse + border losses against the image); the result
    is blended back and pixels outside the face box are left untouched. With --reference the
    face is replaced by yours (inverted from your selfie, kept by L_face and the identity loss).

    \b
    Examples:
      insetgan refine-face body.png --face-net ffhq.pkl --face-box 200,40,96,96 --outdir out/refined
      insetgan refine-face photo.jpg --face-net ffhq.pkl --reference selfie.jpg --outdir out/me
    """
    req = RefineRequest(
        image=image, face_net=face_net, reference=reference,
        face_source=_source(face_seed, face_latent, "face", "face"), search=search, preset=preset, steps=steps, trunc=trunc, blend=blend, face_box=_box(face_box, "face"),
        device=torch_device(device), cache_dir=Path(outdir) / "cache", perceptual=perceptual, weights=weights,
        embed=_embed_config(invert_steps, pti, pti_steps, identity_weight), identity_weight=identity_weight,
        keep_best=keep_best)
    _write_job(run_refine_request(req, _progress_factory(progress_mode)), outdir)


COMMANDS = (compose, sample_bodies, refine_face)
