"""The ``insetgan`` command line: thin wrappers that parse, load, call library functions and write files."""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np
import torch

import insetgan
from insetgan import io as iio
from insetgan import frontend, jobs
from insetgan.frontend import EmbedConfig
from insetgan.invert import InvertConfig, PTIConfig
from insetgan.models import resolve_network
from insetgan.perceptual import PERCEPTUAL_SPECS, PerceptualChoice, load_perceptual
from insetgan.train.loop import TrainConfig
from insetgan.generate import SampleConfig, sample_seeds
from insetgan.optimize import OptimConfig, load_config
from insetgan.regions import Box
from insetgan.networks import native
from insetgan.networks.checkpoints import Checkpoint, load_checkpoint
from insetgan.networks.errors import CheckpointError
from insetgan.networks.generator import NOISE_MODES
from insetgan.torch_utils.cpu_alloc import tune_cpu_allocator

log = logging.getLogger("insetgan")


class UserError(click.ClickException):
    """A one-line error for the user (exit code 1)."""


def _handle_errors(fn: Callable) -> Callable:
    """Turn library errors into one-line user errors (tracebacks only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (CheckpointError, ValueError, OSError) as exc:
            if click.get_current_context().find_root().params.get("debug"):
                raise
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(msg) from None

    return wrapper


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA device is available")
    return torch.device(name)


def _versions() -> dict[str, str]:
    return {
        "insetgan": insetgan.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _prepare_outdir(outdir: str) -> Path:
    path = Path(outdir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--outdir {outdir} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(insetgan.__version__, prog_name="insetgan")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("--quiet", is_flag=True, help="Only print errors.")
def cli(debug: bool, quiet: bool) -> None:
    """Compose full-body humans from canvas and inset StyleGAN2 generators."""
    level = logging.DEBUG if debug else (logging.ERROR if quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr, force=True)


@cli.command()
@click.option("--network", "network", required=True, metavar="CKPT", help="Generator checkpoint (.pkl, .pt, .safetensors).")
@click.option("--seeds", required=True, help="Seeds, e.g. 0-3,7.")
@click.option("--trunc", "trunc", type=float, default=1.0, show_default=True, help="Truncation psi.")
@click.option("--trunc-cutoff", type=int, default=None, help="Truncate only the first N layers.")
@click.option("--noise-mode", type=click.Choice(NOISE_MODES), default="const", show_default=True)
@click.option("--class", "class_idx", type=int, default=None, help="Class label for conditional networks.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--raw", is_flag=True, help="Also write each float32 CHW image as seedNNNN.npy.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@_handle_errors
def generate(network: str, seeds: str, trunc: float, trunc_cutoff: int | None, noise_mode: str,
             class_idx: int | None, device: str, raw: bool, outdir: str) -> None:
    """Generate images for the given seeds.

    \b
    Example:
      insetgan generate --network ffhq.pkl --seeds 0-3,7 --trunc 0.7 --outdir out/
    """
    seed_list = iio.parse_range(seeds, "seed")
    dev = _device(device)
    t0 = time.perf_counter()
    ckpt = load_checkpoint(network, dev)
    load_s = time.perf_counter() - t0
    G = ckpt.generator
    cfg = SampleConfig(trunc, trunc_cutoff, noise_mode, class_idx)
    cfg.validate(G)
    t1 = time.perf_counter()
    images, per_seed = sample_seeds(G, seed_list, cfg)
    gen_s = time.perf_counter() - t1

    # Encode everything before the first write, then write each file atomically.
    arrays = [iio.to_uint8(img) for img in images]
    files: dict[str, bytes] = {}
    for seed, img, arr in zip(seed_list, images, arrays):
        files[f"seed{seed:04d}.png"] = iio.png_bytes(arr)
        if raw:
            files[f"seed{seed:04d}.npy"] = iio.npy_bytes(img.numpy().astype(np.float32))
    files["grid.png"] = iio.png_bytes(iio.grid(arrays))
    report = {
        "command": "generate",
        "inputs": {"network": str(network), "sha256": jobs.sha256(network), "format": ckpt.format, "notes": list(ckpt.notes)},
        "seeds": seed_list,
        "settings": {"truncation_psi": trunc, "truncation_cutoff": trunc_cutoff, "noise_mode": noise_mode,
                     "class": class_idx, "device": str(dev), "z": "np.random.RandomState(seed).randn(1, z_dim)"},
        "generator": G.cfg.to_dict(),
        "num_ws": G.num_ws,
        "outputs": sorted(files) + ["report.json"],
        "timings_s": {"load": round(load_s, 4), "generate": round(gen_s, 4),
                      "per_seed": [round(s, 4) for s in per_seed]},
        "versions": _versions(),
    }
    files["report.json"] = iio.json_bytes(report)
    out = _prepare_outdir(outdir)
    for name, data in files.items():
        iio.atomic_write_bytes(out / name, data)
    log.info("wrote %d images, grid.png and report.json to %s", len(seed_list), out)


def describe(ckpt: Checkpoint) -> dict[str, Any]:
    """A JSON-able summary of a loaded checkpoint (what ``inspect`` prints)."""
    G = ckpt.generator
    cfg = G.cfg
    return {
        "path": ckpt.path,
        "format": ckpt.format,
        "resolution": {"height": cfg.img_height, "width": cfg.img_width},
        "z_dim": cfg.z_dim,
        "w_dim": cfg.w_dim,
        "c_dim": cfg.c_dim,
        "img_channels": cfg.img_channels,
        "num_ws": G.num_ws,
        "mapping_layers": cfg.mapping_layers,
        "mapping_lr_multiplier": cfg.mapping_lr_multiplier,
        "architecture": cfg.architecture,
        "channels": {str(r): cfg.channels(r) for r in cfg.block_resolutions},
        "parameters": sum(p.numel() for p in G.parameters()),
        "num_fp16_res": cfg.num_fp16_res,
        "fp16_resolutions": [r for r in cfg.block_resolutions if r >= cfg.fp16_resolution] if cfg.num_fp16_res else [],
        "conv_clamp": cfg.conv_clamp,
        "notes": list(ckpt.notes),
        "config": cfg.to_dict(),
    }


@cli.command()
@click.argument("checkpoint", metavar="CKPT")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@_handle_errors
def inspect(checkpoint: str, as_json: bool) -> None:
    """Describe a checkpoint: format, resolution, dims, channels, parameters.

    \b
    Example:
      insetgan inspect stylegan_human_v2_1024.pkl --json
    """
    info = describe(load_checkpoint(checkpoint))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    res = info["resolution"]
    fp16 = ", ".join(map(str, info["fp16_resolutions"])) or "none"
    lines = [
        f"file          {info['path']}",
        f"format        {info['format']}",
        f"resolution    {res['height']}x{res['width']} (HxW), {info['img_channels']} channel(s)",
        f"z/w/c dims    {info['z_dim']} / {info['w_dim']} / {info['c_dim']}",
        f"num_ws        {info['num_ws']}",
        f"mapping       {info['mapping_layers']} layers, lr multiplier {info['mapping_lr_multiplier']}",
        f"architecture  {info['architecture']}",
        "channels      " + ", ".join(f"{r}:{c}" for r, c in info["channels"].items()),
        f"parameters    {info['parameters']:,}",
        f"fp16 blocks   {fp16} (CUDA only); conv_clamp {info['conv_clamp']}",
    ]
    lines += [f"note          {n}" for n in info["notes"]]
    click.echo("\n".join(lines))


@cli.command()
@click.argument("src", metavar="IN")
@click.argument("dst", metavar="OUT.safetensors")
@click.option("--fp16", is_flag=True, help="Store weights as float16 (half the size).")
@_handle_errors
def convert(src: str, dst: str, fp16: bool) -> None:
    """Convert any supported checkpoint to insetgan's safetensors format.

    \b
    Example:
      insetgan convert stylegan2-ffhq-config-f.pt ffhq.safetensors
    """
    ckpt = load_checkpoint(src)
    out = Path(dst)
    if out.is_dir():
        raise ValueError(f"{dst} is a directory")
    if not out.parent.exists():
        raise ValueError(f"folder {out.parent} does not exist")
    kept = {k: v for k, v in ckpt.metadata.items() if k not in ("format", "format_version", "config")}
    extra = {**kept, "source_format": ckpt.format, "source_file": Path(src).name, "notes": list(ckpt.notes)}
    native.save(ckpt.generator, out, extra=extra, dtype=torch.float16 if fp16 else torch.float32)
    log.info("wrote %s (%s -> insetgan-safetensors)", out, ckpt.format)


def _is_quiet() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("quiet"))


class _ProgressBar:
    """A tqdm bar showing the current losses (silent with --quiet)."""

    def __init__(self, desc: str, notice: str | None = None) -> None:
        self.desc, self.quiet, self.bar, self.notice = desc, _is_quiet(), None, notice

    def __call__(self, step: int, total: int, losses: dict[str, float]) -> None:
        if self.bar is None:  # created on the first step, so input errors print nothing else
            from tqdm import tqdm

            if self.notice:
                log.warning(self.notice)

            self.bar = tqdm(total=total, desc=self.desc, disable=self.quiet, leave=False, file=sys.stderr,
                            dynamic_ncols=True)
        shown = {k.split(":")[-1] if ":" in k else k: v for k, v in losses.items()
                 if k in ("total",) or k.endswith("coarse_l1") or k.endswith(":border")}
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


_ROLES = {"body": "body", "face-net": "face", "shoes-net": "shoes"}


def _load_net(path: str, dev: torch.device, what: str) -> tuple[Checkpoint, dict[str, Any]]:
    path = resolve_network(path, _ROLES.get(what, what))
    if not Path(path).is_file():
        raise ValueError(f"--{what}: checkpoint not found: {path}")
    ckpt = load_checkpoint(path, dev)
    info = {"path": str(path), "sha256": jobs.sha256(path), "format": ckpt.format, "notes": list(ckpt.notes),
            "resolution": [ckpt.generator.cfg.img_height, ckpt.generator.cfg.img_width]}
    if ckpt.generator.c_dim:
        raise ValueError(f"--{what}: conditional networks are not supported for composition")
    return ckpt, info


def _source(seed: int | None, latent: str | None, key: str, what: str, default_seed: int | None = None
            ) -> jobs.LatentSource | None:
    if seed is not None and latent is not None:
        raise ValueError(f"give either --{what}-seed or --{what}-latent, not both")
    if latent is not None:
        return jobs.LatentSource(path=latent, key=key)
    if seed is None:
        if default_seed is None:
            return None
        seed = default_seed
    if not 0 <= seed <= iio.MAX_SEED:
        raise ValueError(f"--{what}-seed must be in 0..{iio.MAX_SEED}")
    return jobs.LatentSource(seed=seed, key=key)


def _box(text: str | None, what: str) -> Box | None:
    if text is None:
        return None
    try:
        return Box.parse(text)
    except ValueError as exc:
        raise ValueError(f"--{what}-box: {exc}") from None


_COMMON_OPTIONS = [
    click.option("--perceptual", type=click.Choice(PERCEPTUAL_SPECS), default="auto", show_default=True,
                 help="Perceptual loss: LPIPS when its backbone weights are found (auto), or the l1-ssim fallback."),
    click.option("--weights", default=None, metavar="PATH",
                 help="LPIPS backbone file or folder (else $INSETGAN_WEIGHTS, then the torch hub cache)."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
    click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Output folder."),
]


def _engine_options(fn: Callable) -> Callable:
    options = [
        click.option("--preset", default="default", show_default=True, metavar="NAME|FILE",
                     help="default, paper, stylegan-human, or a JSON/YAML config file."),
        click.option("--steps", type=int, default=None, help="Total steps (the preset's schedule is rescaled)."),
        click.option("--trunc", type=float, default=0.7, show_default=True, help="Truncation psi for seeds."),
        click.option("--blend", type=click.Choice(["hard", "feather", "laplacian"]), default=None,
                     help="Final composite (default: the preset's)."),
        click.option("--face-box", default=None, metavar="x,y,w,h", help="Face box in canvas pixels (skips detection)."),
    ] + _COMMON_OPTIONS
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _resolve_config(preset: str, steps: int | None, blend_name: str | None) -> OptimConfig:
    cfg = load_config(preset)
    if steps is not None:
        cfg = cfg.with_steps(steps)
    if blend_name is not None:
        cfg = dataclasses.replace(cfg, blend=blend_name)
    return cfg


def _write_job(out: jobs.JobOutput, outdir: str, cache_files: dict[str, bytes] | None = None) -> None:
    """Write a job's files (and new inversion cache entries into OUTDIR/cache), all at the end."""
    path = _prepare_outdir(outdir)
    if cache_files:
        (path / "cache").mkdir(exist_ok=True)
        for name, data in cache_files.items():
            iio.atomic_write_bytes(path / "cache" / name, data)
    for name, data in out.files.items():
        iio.atomic_write_bytes(path / name, data)
    after = out.report["metrics"]["after"]
    seams = [v for row in after for k, v in row.items() if k.endswith(":seam") and v is not None]
    log.info("wrote %d files to %s (seam score %s, %d steps in %.1f s)", len(out.files), path,
             ", ".join(f"{s:.3f}" for s in seams[:8]), out.report["steps"], out.report["timings_s"]["optimize"])


def _head(command: str, dev: torch.device, inputs: dict[str, Any], load_s: float, **extra: Any) -> dict[str, Any]:
    return {"command": command, "inputs": inputs, "device": str(dev), **extra,
            "timings_s": {"load": round(load_s, 4)}, "versions": _versions()}


def _common_options(fn: Callable) -> Callable:
    for opt in reversed(_COMMON_OPTIONS):
        fn = opt(fn)
    return fn


def _invert_options(fn: Callable) -> Callable:
    options = [
        click.option("--invert-steps", type=click.IntRange(1, 100000), default=InvertConfig.steps, show_default=True,
                     help="Projector steps for --face/--outfit/--reference photos."),
        click.option("--pti", is_flag=True, help="Pivotal tuning after projecting a photo (sharper, slower)."),
        click.option("--pti-steps", type=click.IntRange(1, 100000), default=PTIConfig.steps, show_default=True),
        click.option("--identity-weight", type=click.FloatRange(0), default=0.5, show_default=True,
                     help="Weight of the MobileFaceNet identity loss keeping the user's face."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _perceptual(spec: str, weights: str | None, dev: torch.device) -> PerceptualChoice:
    """The perceptual loss; a fallback notice is shown by the first progress bar, once inputs are valid."""
    return load_perceptual(spec, weights, dev, warn=False)


def _embed_config(invert_steps: int, pti: bool, pti_steps: int, identity_weight: float, mode: str = "wplus"
                  ) -> EmbedConfig:
    return EmbedConfig(InvertConfig(mode=mode, steps=invert_steps), PTIConfig(steps=pti_steps) if pti else None,
                       identity_weight=identity_weight)


_CKPT_SUFFIXES = (".pkl", ".pt", ".pth", ".safetensors")


def _photo(path: str | None, option: str) -> str | None:
    if path is None:
        return None
    if Path(path).suffix.lower() in _CKPT_SUFFIXES:
        raise ValueError(f"{option} takes a photo, not a checkpoint (give generators with --body/--face-net)")
    if not Path(path).is_file():
        raise ValueError(f"{option}: photo not found: {path}")
    return path


def _user_face(photo: str, G: Any, perceptual: PerceptualChoice, cfg: EmbedConfig, identity_weight: float,
               outdir: str, dev: torch.device, what: str) -> tuple[frontend.Embedded, jobs.UserFace]:
    """Align + invert the user's selfie (reusing OUTDIR/cache): the embedding and the user's face for the job."""
    from insetgan.identity import load_mobilefacenet

    net = load_mobilefacenet(device=dev) if identity_weight > 0 else None
    bar = _ProgressBar(f"invert {what}", perceptual.notice)
    try:
        emb, metric_img, identity = frontend.embed_face(photo, G, cfg, perceptual.fn, Path(outdir) / "cache",
                                                        dev, bar, identity_net=net)
    finally:
        bar.close()
    log.info("selfie inverted (PSNR %.2f dB, %s)", emb.info["metrics"]["inverted"]["psnr"][0],
             "cached" if emb.info.get("cache", {}).get("hit") else f"{emb.info['seconds']:.1f} s")
    return emb, jobs.UserFace(identity, metric_img, identity_weight)


def _compose_job(command: str, body: str, face: str, shoes: str | None, sources: list, face_source: Any,
                 shoes_seed: int | None, preset: str, steps: int | None, trunc: float, blend: str | None,
                 face_box: str | None, shoes_box: str | None, detector: str, device: str, outdir: str,
                 keep_face: bool, perceptual: str, weights: str | None, photo: str | None = None,
                 outfit: str | None = None, outfit_mask: str | None = None,
                 embed_cfg: EmbedConfig | None = None, identity_weight: float = 0.5) -> None:
    cfg = _resolve_config(preset, steps, blend)
    fbox, sbox = _box(face_box, "face"), _box(shoes_box, "shoes")
    dev = _device(device)
    t0 = time.perf_counter()
    body_ck, body_info = _load_net(body, dev, "body")
    face_ck, face_info = _load_net(face, dev, "face-net")
    inputs: dict[str, Any] = {"body": body_info, "face": face_info}
    shoes_G = None
    shoes_source = None
    if shoes is not None:
        shoes_ck, inputs["shoes"] = _load_net(shoes, dev, "shoes-net")
        shoes_G = shoes_ck.generator
        shoes_source = jobs.LatentSource(seed=shoes_seed if shoes_seed is not None else 0, key="shoes")
    elif shoes_box is not None or shoes_seed is not None:
        raise ValueError("--shoes-box/--shoes-seed need --shoes-net CKPT")
    pc = _perceptual(perceptual, weights, dev)
    body_G, face_G, user = body_ck.generator, face_ck.generator, None
    cache_files: dict[str, bytes] = {}
    if photo is not None:
        emb, user = _user_face(photo, face_G, pc, embed_cfg, identity_weight, outdir, dev, "face")
        face_G, inputs["face_photo"] = emb.G, emb.info
        face_source = jobs.LatentSource(ws=emb.ws, label=photo, key="face")
        cache_files.update(emb.cache_files)
    if outfit is not None:
        bar = _ProgressBar("invert outfit", pc.notice if photo is None else None)
        try:
            emb = frontend.embed_outfit(outfit, outfit_mask, body_G, embed_cfg, pc.fn, Path(outdir) / "cache", dev,
                                        bar)
        finally:
            bar.close()
        body_G, inputs["outfit"] = emb.G, emb.info
        cache_files.update(emb.cache_files)
        sources = [jobs.LatentSource(ws=emb.ws, label=outfit)]
    head = _head(command, dev, inputs, time.perf_counter() - t0,
                 latents={"body": [s.describe() for s in sources], "face": face_source.describe(),
                          **({"shoes": shoes_source.describe()} if shoes_source else {})},
                 truncation_psi=trunc)
    priors = jobs.region_priors(dict(body_ck.metadata))
    head["region_priors"] = {k: list(v) for k, v in priors.items()} or "built-in defaults"
    inp = jobs.ComposeInputs(body_G, face_G, tuple(sources), face_source, shoes_G,
                             shoes_source, trunc, fbox, sbox, detector, user, priors)
    bar = _ProgressBar(command, pc.notice if photo is None and outfit is None else None)
    try:
        out = jobs.run_compose(inp, cfg, dev, head, pc.fn, pc.name, progress=bar, keep_face=keep_face)
    finally:
        bar.close()
    _write_job(out, outdir, cache_files)


_DETECTOR = click.option("--detector", type=click.Choice(jobs.DETECTORS), default="auto", show_default=True,
                         help="Face box: dlib detection (auto: when installed), or the fixed prior.")


@cli.command()
@click.option("--body", default="default", show_default=True, metavar="CKPT",
              help="Canvas (full-body) generator; 'default' = the built-in model.")
@click.option("--face-net", default="default", show_default=True, metavar="CKPT",
              help="Face generator; 'default' = the built-in model.")
@click.option("--face", "face_photo", default=None, metavar="PHOTO", help="Your selfie: the result gets your face.")
@click.option("--outfit", default=None, metavar="PHOTO", help="A full-body photo whose clothes the body starts from.")
@click.option("--outfit-mask", default=None, metavar="MASK", help="Person mask of --outfit (non-zero = person).")
@click.option("--shoes-net", default=None, metavar="CKPT", help="Optional shoes generator ('default' = built-in).")
@click.option("--body-seed", type=int, default=None, help="Body seed (default 0).")
@click.option("--body-latent", default=None, metavar="FILE", help="Body W/W+ (.npy, or latents.npz of a run).")
@click.option("--face-seed", type=int, default=None, help="Face seed (default 0).")
@click.option("--face-latent", default=None, metavar="FILE", help="Face W/W+ (.npy, or latents.npz of a run).")
@click.option("--shoes-seed", type=int, default=None, help="Shoes seed (default 0).")
@click.option("--shoes-box", default=None, metavar="x,y,w,h", help="Shoes box (default: prior + local search).")
@_DETECTOR
@_invert_options
@_engine_options
@_handle_errors
def compose(body: str, face_net: str, face_photo: str | None, outfit: str | None, outfit_mask: str | None,
            shoes_net: str | None, body_seed: int | None, body_latent: str | None, face_seed: int | None,
            face_latent: str | None, shoes_seed: int | None, shoes_box: str | None, detector: str,
            invert_steps: int, pti: bool, pti_steps: int, identity_weight: float, preset: str,
            steps: int | None, trunc: float, blend: str | None, face_box: str | None, perceptual: str,
            weights: str | None, device: str, outdir: str) -> None:
    """Compose one full body: canvas and insets optimised jointly so the seams vanish.

    With --face, your selfie is aligned, inverted into the face generator (cached in
    OUTDIR/cache) and kept yours by L_face and an identity loss; with --outfit, the body
    starts from your full-body photo.

    \b
    Examples:
      insetgan compose --body body.pkl --face-net ffhq.pkl --face selfie.jpg --outdir out/me
      insetgan compose --body stylegan_human_v2_1024.pkl --face-net ffhq.pkl \\
          --body-seed 3 --face-seed 7 --outdir out/compose
    """
    face_photo, outfit = _photo(face_photo, "--face"), _photo(outfit, "--outfit")
    if face_photo is not None and (face_seed is not None or face_latent is not None):
        raise ValueError("give either --face PHOTO or --face-seed/--face-latent, not both")
    if outfit is not None and (body_seed is not None or body_latent is not None):
        raise ValueError("give either --outfit PHOTO or --body-seed/--body-latent, not both")
    if outfit_mask is not None and outfit is None:
        raise ValueError("--outfit-mask needs --outfit PHOTO")
    body_src = _source(body_seed, body_latent, "canvas", "body", default_seed=0)
    face_src = _source(face_seed, face_latent, "face", "face", default_seed=0)
    _compose_job("compose", body, face_net, shoes_net, [body_src], face_src, shoes_seed, preset, steps, trunc, blend,
                 face_box, shoes_box, detector, device, outdir, False, perceptual, weights, face_photo, outfit,
                 outfit_mask, _embed_config(invert_steps, pti, pti_steps, identity_weight), identity_weight)


@cli.command("sample-bodies")
@click.option("--body", default="default", show_default=True, metavar="CKPT",
              help="Canvas (full-body) generator; 'default' = the built-in model.")
@click.option("--face-net", default="default", show_default=True, metavar="CKPT",
              help="Face generator; 'default' = the built-in model.")
@click.option("--face", "face_photo", default=None, metavar="PHOTO", help="Your selfie: every body gets your face.")
@click.option("--face-seed", type=int, default=None, help="Face seed (default 0).")
@click.option("--face-latent", default=None, metavar="FILE", help="Face W/W+ (.npy, or latents.npz of a run).")
@click.option("--num", type=click.IntRange(1, 256), default=8, show_default=True, help="Number of bodies.")
@click.option("--body-seeds", default=None, help="Body seeds, e.g. 10-17 (default 0..num-1).")
@_DETECTOR
@_invert_options
@_engine_options
@_handle_errors
def sample_bodies(body: str, face_net: str, face_photo: str | None, face_seed: int | None, face_latent: str | None,
                  num: int, body_seeds: str | None, detector: str, invert_steps: int, pti: bool, pti_steps: int,
                  identity_weight: float, preset: str, steps: int | None, trunc: float, blend: str | None,
                  face_box: str | None, perceptual: str, weights: str | None, device: str, outdir: str) -> None:
    """Many bodies for one face, optimised together in one batch, each kept close to that face.

    \b
    Examples:
      insetgan sample-bodies --body body.pkl --face-net ffhq.pkl --face selfie.jpg --num 8 --outdir out/bodies
      insetgan sample-bodies --body body.pkl --face-net ffhq.pkl --face-seed 7 --outdir out/bodies
    """
    face_photo = _photo(face_photo, "--face")
    if face_photo is not None and (face_seed is not None or face_latent is not None):
        raise ValueError("give either --face PHOTO or --face-seed/--face-latent, not both")
    seeds = iio.parse_range(body_seeds, "seed") if body_seeds else list(range(num))
    face_src = _source(face_seed, face_latent, "face", "face", default_seed=0)
    sources = [jobs.LatentSource(seed=s) for s in seeds]
    _compose_job("sample-bodies", body, face_net, None, sources, face_src, None, preset, steps, trunc, blend,
                 face_box, None, detector, device, outdir, True, perceptual, weights, face_photo, None, None,
                 _embed_config(invert_steps, pti, pti_steps, identity_weight), identity_weight)


@cli.command("refine-face")
@click.argument("image", metavar="IMAGE")
@click.option("--face-net", default="default", show_default=True, metavar="CKPT",
              help="Face generator; 'default' = the built-in model.")
@click.option("--reference", default=None, metavar="PHOTO", help="Your selfie: replace the face by yours.")
@click.option("--face-seed", type=int, default=None, help="Face start seed (default: best of --search seeds).")
@click.option("--face-latent", default=None, metavar="FILE", help="Face start W/W+ (.npy or latents.npz).")
@click.option("--search", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Seeds tried for the start face when no seed or latent is given.")
@_invert_options
@_engine_options
@_handle_errors
def refine_face(image: str, face_net: str, reference: str | None, face_seed: int | None, face_latent: str | None,
                search: int, invert_steps: int, pti: bool, pti_steps: int, identity_weight: float, preset: str,
                steps: int | None, trunc: float, blend: str | None, face_box: str | None, perceptual: str,
                weights: str | None, device: str, outdir: str) -> None:
    """Refine the face of an existing image (a photo or a generated body); no body generator needed.

    Only the face latent is optimised (coarse + border losses against the image); the result
    is blended back and pixels outside the face box are left untouched. With --reference the
    face is replaced by yours (inverted from your selfie, kept by L_face and the identity loss).

    \b
    Examples:
      insetgan refine-face body.png --face-net ffhq.pkl --face-box 200,40,96,96 --outdir out/refined
      insetgan refine-face photo.jpg --face-net ffhq.pkl --reference selfie.jpg --outdir out/me
    """
    cfg = _resolve_config(preset, steps, blend)
    fbox = _box(face_box, "face")
    reference = _photo(reference, "--reference")
    if reference is not None and (face_seed is not None or face_latent is not None):
        raise ValueError("give either --reference PHOTO or --face-seed/--face-latent, not both")
    face_src = _source(face_seed, face_latent, "face", "face")
    dev = _device(device)
    t0 = time.perf_counter()
    img = jobs.load_image(image, dev)
    face_ck, face_info = _load_net(face_net, dev, "face-net")
    pc = _perceptual(perceptual, weights, dev)
    inputs: dict[str, Any] = {"image": {"path": str(image), "sha256": jobs.sha256(image),
                                        "size": [img.shape[-2], img.shape[-1]]}, "face": face_info}
    face_G, user, cache_files = face_ck.generator, None, {}
    if reference is not None:
        emb, user = _user_face(reference, face_G, pc, _embed_config(invert_steps, pti, pti_steps, identity_weight),
                               identity_weight, outdir, dev, "reference")
        face_G, inputs["face_photo"], cache_files = emb.G, emb.info, emb.cache_files
        face_src = jobs.LatentSource(ws=emb.ws, label=reference, key="face")
    head = _head("refine-face", dev, inputs, time.perf_counter() - t0, truncation_psi=trunc)
    bar = _ProgressBar("refine-face", pc.notice if reference is None else None)
    try:
        out = jobs.run_refine_face(img, face_G, face_src, fbox, cfg, head, trunc=trunc,
                                   search_seeds=tuple(range(search)), perceptual=pc.fn, perceptual_name=pc.name,
                                   progress=bar, user_face=user)
    finally:
        bar.close()
    _write_job(out, outdir, cache_files)


@cli.command()
@click.argument("image", metavar="IMAGE")
@click.option("--size", type=click.IntRange(8, 4096), default=1024, show_default=True, help="Output side in pixels.")
@click.option("--five-point", is_flag=True, help="5-point similarity crop for identity networks (ArcFace layout).")
@click.option("--out", "out_path", required=True, metavar="FILE.png", help="Output image (PNG).")
@_handle_errors
def align(image: str, size: int, five_point: bool, out_path: str) -> None:
    """Align the largest face of a photo: the FFHQ crop, or the 5-point identity crop.

    \b
    Example:
      insetgan align selfie.jpg --size 1024 --out aligned.png
      insetgan align selfie.jpg --five-point --size 112 --out id.png
    """
    from insetgan import align as al

    out = Path(out_path)
    if out.is_dir() or not out.parent.exists():
        raise ValueError(f"--out {out_path}: not a file path in an existing folder")
    img = al.open_rgb(image)
    face = al.LandmarkDetector().largest(img, image)
    aligned = al.align_five(img, al.five_points(face.landmarks), size) if five_point else \
        al.align_ffhq(img, face.landmarks, size)
    iio.atomic_write_bytes(out, iio.png_bytes(np.asarray(aligned)))
    log.info("wrote %s (%dx%d, %s)", out, size, size, "5-point" if five_point else "FFHQ")


@cli.command()
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--network", required=True, metavar="CKPT", help="Generator to invert into.")
@click.option("--mode", type=click.Choice(["w", "wplus", "pti"]), default="wplus", show_default=True,
              help="Latent space; pti = W pivot, then pivotal tuning of the generator.")
@click.option("--steps", type=click.IntRange(1, 100000), default=InvertConfig.steps, show_default=True,
              help="Projector steps.")
@click.option("--pti-steps", type=click.IntRange(1, 100000), default=PTIConfig.steps, show_default=True)
@click.option("--align/--no-align", default=True, show_default=True,
              help="FFHQ-align the largest face (face networks); --no-align crops the photo to the network's aspect.")
@click.option("--mask", default=None, metavar="MASK",
              help="Invert only a region: a mask in the network's output frame (resized; non-zero = keep).")
@click.option("--identity-weight", type=click.FloatRange(0), default=0.0, show_default=True,
              help="MobileFaceNet identity loss weight (aligned faces only).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the projector's latent noise.")
@_common_options
@_handle_errors
def invert(images: tuple[str, ...], network: str, mode: str, steps: int, pti_steps: int, align: bool,
           mask: str | None, identity_weight: float, seed: int, perceptual: str, weights: str | None, device: str,
           outdir: str) -> None:
    """Project photos into a generator (GAN inversion): latents, reconstructions, metrics.

    Several images are inverted together as one batch. Writes latents.npz (ws [B, L, D] and the
    noise maps; usable as --face-latent/--body-latent), target.png, reconstruction.png,
    compare.png (target | start | result), report.json (PSNR, SSIM, perceptual distance, dlib
    identity distance) and, with --mode pti, tuned.safetensors (the tuned generator).

    \b
    Examples:
      insetgan invert selfie.jpg --network ffhq.pkl --outdir out/me
      insetgan invert a.jpg b.jpg --network ffhq.pkl --mode pti --steps 500 --outdir out/pti
    """
    dev = _device(device)
    t0 = time.perf_counter()
    ck, net_info = _load_net(network, dev, "network")
    G = ck.generator
    pc = _perceptual(perceptual, weights, dev)
    mask_t = None
    if mask is not None:  # checked before the (slow) face alignment
        from PIL import Image

        _, H, W = G.img_shape
        mask_t = frontend.to_tensor(frontend.load_photo(mask).convert("L").resize((W, H), Image.BILINEAR), dev)
    target, metric_imgs, infos = frontend.load_targets(list(images), G, align, dev)
    identity = None
    if identity_weight > 0:
        if not align:
            raise ValueError("--identity-weight needs --align (aligned faces)")
        from insetgan.identity import load_mobilefacenet

        identity = frontend.batch_identity(load_mobilefacenet(device=dev), metric_imgs, G.img_shape[1], dev)
    cfg = InvertConfig(mode="w" if mode == "pti" else mode, steps=steps, seed=seed, identity_weight=identity_weight)
    pti_cfg = PTIConfig(steps=pti_steps) if mode == "pti" else None
    head = _head("invert", dev, {"network": net_info, "images": infos}, time.perf_counter() - t0, mode=mode,
                 aligned=align, mask=mask, perceptual=pc.name)
    bar, pti_bar = _ProgressBar("invert", pc.notice), _ProgressBar("pti")
    try:
        res = frontend.run_invert(G, target, cfg, pti_cfg, pc.fn, head, mask_t, identity, metric_imgs, bar, pti_bar)
    finally:
        bar.close()
        pti_bar.close()
    out = _prepare_outdir(outdir)
    if res.tuned is not None:
        native.save(res.tuned, out / "tuned.safetensors", extra={"insetgan_pti": {
            "base_sha256": net_info["sha256"], "images": [i["sha256"] for i in infos]}})
    for name, data in res.files.items():
        iio.atomic_write_bytes(out / name, data)
    m = res.report["metrics"]
    log.info("inverted %d image(s): PSNR %s dB (start %s); wrote %s", len(images),
             ", ".join(f"{v:.2f}" for v in (m.get("tuned") or m["projected"])["psnr"]),
             ", ".join(f"{v:.2f}" for v in m["start"]["psnr"]), out)


@cli.command()
@click.option("--data", required=True, metavar="DIR|ZIP", help="Prepared dataset (insetgan prepare): images + dataset.json.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Run folder (states, samples, networks).")
@click.option("--kimg", type=click.FloatRange(min=0.001), default=TrainConfig.kimg, show_default=True,
              help="Train until this many thousand real images were shown.")
@click.option("--batch", type=click.IntRange(1), default=TrainConfig.batch, show_default=True, help="Global batch size.")
@click.option("--batch-gpu", type=click.IntRange(1), default=None, help="Samples per forward pass (gradient accumulation).")
@click.option("--gamma", type=click.FloatRange(0), default=TrainConfig.gamma, show_default=True, help="R1 weight.")
@click.option("--ema-kimg", type=click.FloatRange(0), default=TrainConfig.ema_kimg, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=TrainConfig.lr, show_default=True)
@click.option("--lr-d", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Discriminator lr (two time-scale updates)  [default: --lr]")
@click.option("--channel-base", type=click.IntRange(1), default=TrainConfig.channel_base, show_default=True)
@click.option("--channel-max", type=click.IntRange(1), default=TrainConfig.channel_max, show_default=True)
@click.option("--mbstd-channels", type=click.IntRange(1), default=TrainConfig.mbstd_channels, show_default=True,
              help="Discriminator minibatch-std features (channel groups, each its own statistic).")
@click.option("--map-layers", type=click.IntRange(1), default=TrainConfig.map_layers, show_default=True)
@click.option("--z-dim", type=click.IntRange(1), default=TrainConfig.z_dim, show_default=True, help="z and w size.")
@click.option("--aug", default=TrainConfig.aug, show_default=True, help="DiffAugment policies ('' for none).")
@click.option("--xflip/--no-xflip", default=True, show_default=True, help="Mirror real images at random.")
@click.option("--noise/--no-noise", default=True, show_default=True,
              help="Per-pixel noise inputs (--no-noise: strengths stay 0, details come from the latents only).")
@click.option("--snapshot-kimg", type=click.FloatRange(min=0.001), default=TrainConfig.snapshot_kimg, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--resume", default=None, metavar="STATE.pt", help="Continue a run from a saved training state.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@_handle_errors
def train(data: str, outdir: str, kimg: float, batch: int, batch_gpu: int | None, gamma: float, ema_kimg: float,
          lr: float, lr_d: float | None, channel_base: int, channel_max: int, mbstd_channels: int, map_layers: int,
          z_dim: int, aug: str, xflip: bool, noise: bool, snapshot_kimg: float, seed: int, resume: str | None,
          device: str) -> None:
    """Train a StyleGAN2 generator (canvas or inset) on a prepared dataset.

    Runs single-process, or data-parallel under torchrun (NCCL on GPUs, gloo on CPU) with the
    same global --batch. Writes resumable states, sample grids and the G_ema in our safetensors
    format (with the dataset's region priors) every --snapshot-kimg.

    \b
    Examples:
      insetgan train --data data/faces64 --outdir runs/face64 --kimg 500 --batch 32
      torchrun --nproc_per_node=2 -m insetgan train --data data/bodies --outdir runs/body --batch 32
      insetgan train --data data/faces64 --outdir runs/face64 --resume runs/face64/state-000100.pt
    """
    from insetgan.train.loop import load_dataset
    from insetgan.train.loop import train as run_training

    cfg = TrainConfig(kimg=kimg, batch=batch, batch_gpu=batch_gpu, gamma=gamma, ema_kimg=ema_kimg, lr=lr, lr_d=lr_d,
                      channel_base=channel_base, channel_max=channel_max, mbstd_channels=mbstd_channels,
                      map_layers=map_layers, z_dim=z_dim, w_dim=z_dim, aug=aug, xflip=xflip, noise=noise, snapshot_kimg=snapshot_kimg, seed=seed)
    if resume is not None and not Path(resume).is_file():
        raise ValueError(f"--resume: state not found: {resume}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = _device(device)
    if world > 1:
        import torch.distributed as dist

        if batch % world:
            raise ValueError(f"--batch {batch} must be divisible by the number of processes ({world})")
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = int(os.environ.get("RANK", "0"))
    try:
        dataset = load_dataset(data)
        out = _prepare_outdir(outdir) if rank == 0 else Path(outdir)
        t0 = time.perf_counter()
        bar = _TrainBar(int(cfg.kimg * 1000)) if rank == 0 else None
        try:
            state = run_training(dataset, cfg, out, dev, resume, bar)
        finally:
            if bar is not None:
                bar.close()
        if rank == 0:
            seconds = time.perf_counter() - t0
            report = {"command": "train", "data": str(data), "dataset": {k: v for k, v in dataset.meta.items()
                                                                       if k not in ("records",)},
                      "images": list(dataset.images.shape), "config": cfg.to_dict(), "processes": world,
                      "device": str(dev), "resumed_from": resume, "steps": state.step, "kimg": state.nimg / 1000,
                      "seconds": round(seconds, 2), "last_losses": bar.last if bar else None,
                      "versions": _versions()}
            iio.atomic_write_bytes(out / "report.json", iio.json_bytes(report))
            log.info("trained to %.1f kimg in %.0f s; networks in %s", state.nimg / 1000, seconds, out)
    finally:
        if world > 1:
            import torch.distributed as dist

            try:
                dist.barrier()  # rank 0 may still be writing snapshots: leave together (gloo aborts otherwise)
            finally:
                dist.destroy_process_group()


class _TrainBar:
    """tqdm bar over images shown, with kimg, losses and images/s (silent with --quiet)."""

    def __init__(self, total: int) -> None:
        self.total, self.bar, self.last = total, None, None

    def __call__(self, state: Any, losses: dict[str, float], ips: float) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=min(state.nimg, self.total), desc="train", unit="img",
                            disable=_is_quiet(), leave=False, file=sys.stderr, dynamic_ncols=True)
        self.last = {k: round(v, 5) for k, v in losses.items()}
        self.bar.set_postfix({"kimg": f"{state.nimg / 1000:.2f}", **{k: f"{v:.3g}" for k, v in losses.items()},
                              "img/s": f"{ips:.1f}"}, refresh=False)
        self.bar.update(min(state.nimg, self.total) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def ops_report() -> dict[str, Any]:
    """Which op implementations are active on this machine and why (builds the kernels if needed)."""
    from insetgan.torch_utils import custom_ops
    from insetgan.torch_utils.ops import dispatch

    forced = dispatch.forced_reference()
    report: dict[str, Any] = {
        "torch": torch.__version__,
        "INSETGAN_OPS": os.environ.get("INSETGAN_OPS", ""),
        "cache": str(custom_ops.cache_root()),
        "allocator_tuned": tune_cpu_allocator(),
        "devices": {},
    }
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        if forced:
            report["devices"][dev] = {"active": "ref", "reason": "INSETGAN_OPS=ref forces the reference ops"}
            continue
        ok, reason = custom_ops.plugin_status(dev)
        report["devices"][dev] = {"active": ("cpp" if dev == "cpu" else "cuda") if ok else "ref", "reason": reason}
    if not torch.cuda.is_available():
        report["devices"]["cuda"] = {"active": "none", "reason": "no CUDA device (torch.cuda.is_available() is False)"}
    return report


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@_handle_errors
def doctor(as_json: bool) -> None:
    """Report which op implementations (compiled or reference) are active, and why.

    \b
    Example:
      insetgan doctor
      INSETGAN_OPS=ref insetgan doctor --json
    """
    report = ops_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    lines = [f"torch         {report['torch']}", f"INSETGAN_OPS  {report['INSETGAN_OPS'] or '(unset)'}",
             f"kernel cache  {report['cache']}", f"allocator     {'tuned' if report['allocator_tuned'] else 'default'}"]
    for dev, info in report["devices"].items():
        lines.append(f"{dev:<13} {info['active']}: {info['reason']}")
    click.echo("\n".join(lines))


# ---- prepare (datasets) ----
@cli.group()
def prepare() -> None:
    """Build training sets from photos: full-body crops, aligned faces, shoe crops (PNGs + dataset.json)."""


def _run_prepare(desc: str, fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> None:
    bar = _ProgressBar(desc)
    try:
        meta = fn(*args, progress=bar, **kwargs)
    finally:
        bar.close()
    c = meta["counts"]
    skipped = ", ".join(f"{k} {v}" for k, v in c["skipped"].items()) or "none"
    log.info("%s: wrote %d images from %d sources to %s (skipped: %s)", desc, c["written"], c["sources"],
             kwargs.get("out"), skipped)
    if meta.get("priors"):
        log.info("region priors (relative x, y, w, h): face %s, shoes %s", meta["priors"]["face"],
                 meta["priors"]["shoes"])


_prepare_out = click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
_prepare_limit = click.option("--limit", type=int, default=None, help="Use only the first N sources (sorted).")
_prepare_zip = click.option("--zip", "zip_output", is_flag=True, help="Store the images in OUT/images.zip.")


@prepare.command("bodies")
@click.argument("src", metavar="SRC_PHOTOS")
@click.option("--labels", default=None, metavar="DIR", help="Label maps (same stem .png, 0 = background).")
@click.option("--height", type=int, default=256, show_default=True)
@click.option("--width", type=int, default=128, show_default=True)
@_prepare_out
@_prepare_limit
@_prepare_zip
@_handle_errors
def prepare_bodies_cmd(src: str, labels: str | None, height: int, width: int, out: str, limit: int | None,
                       zip_output: bool) -> None:
    """Person-centred full-body crops with face/shoe boxes and median region priors.

    \b
    Example:
      insetgan prepare bodies ccp/photos --labels ccp/labels --out data/bodies --zip
    """
    from insetgan.data import BodiesConfig, prepare_bodies
    cfg = BodiesConfig(height=height, width=width, limit=limit)
    _run_prepare("bodies", prepare_bodies, src, out=out, cfg=cfg, labels=labels, zip_output=zip_output)


@prepare.command("faces")
@click.argument("srcs", nargs=-1, required=True, metavar="SRC...")
@click.option("--size", type=int, default=64, show_default=True, help="Output side (px).")
@click.option("--min-face", type=float, default=24.0, show_default=True, help="Smallest FFHQ quad side (source px).")
@_prepare_out
@_prepare_limit
@_prepare_zip
@_handle_errors
def prepare_faces_cmd(srcs: tuple[str, ...], size: int, min_face: float, out: str, limit: int | None,
                      zip_output: bool) -> None:
    """FFHQ-aligned face crops from face or full-body photos (small photos upscaled for detection).

    \b
    Example:
      insetgan prepare faces aaf/faces ccp/photos --size 64 --out data/faces
    """
    from insetgan.data import FacesConfig, prepare_faces
    cfg = FacesConfig(size=size, min_face=min_face, limit=limit)
    _run_prepare("faces", prepare_faces, list(srcs), out=out, cfg=cfg, zip_output=zip_output)


@prepare.command("shoes")
@click.argument("src", metavar="SRC_PHOTOS")
@click.option("--labels", required=True, metavar="DIR", help="Label maps (same stem .png) with footwear labels.")
@click.option("--size", type=int, default=32, show_default=True, help="Output side (px).")
@click.option("--pad", type=float, default=0.25, show_default=True, help="Margin on each edge, fraction of the side.")
@click.option("--min-px", type=int, default=6, show_default=True, help="Ignore components smaller than this (px).")
@_prepare_out
@_prepare_limit
@_prepare_zip
@_handle_errors
def prepare_shoes_cmd(src: str, labels: str, size: int, pad: float, min_px: int, out: str, limit: int | None,
                      zip_output: bool) -> None:
    """Square crops around each shoe (left and right) of the footwear labels.

    \b
    Example:
      insetgan prepare shoes ccp/photos --labels ccp/labels --size 32 --out data/shoes
    """
    from insetgan.data import ShoesConfig, prepare_shoes
    cfg = ShoesConfig(size=size, pad=pad, min_px=min_px, limit=limit)
    _run_prepare("shoes", prepare_shoes, src, labels, out=out, cfg=cfg, zip_output=zip_output)
# ---- end prepare ----


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI with one-line errors and proper exit codes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    tune_cpu_allocator()
    try:
        cli.main(args=argv, prog_name="insetgan", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - last resort: one line unless --debug
        if "--debug" in argv:
            raise
        click.echo(f"Error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for a traceback)", err=True)
        sys.exit(1)
