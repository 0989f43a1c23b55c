"""Commands on photos: align (FFHQ or 5-point crops) and invert (GAN inversion, PTI)."""
from __future__ import annotations

import time

import click
import numpy as np
from PIL import Image

from insetgan import io as iio
from insetgan.cli.common import (SEED, given, handle_errors, job_options, log, progress_bar, range_type, torch_device,
                                 write_files)
from insetgan.cli.checkpoints import NETWORK_HELP
from insetgan.errors import InsetganError
from insetgan.inversion.invert import InvertConfig, PTIConfig
from insetgan.method.losses import WEIGHT_RANGE
from insetgan.inversion.perceptual import load_perceptual
from insetgan.jobs.requests import report_head


@click.command()
@click.argument("image", metavar="IMAGE")
@click.option("--size", type=click.IntRange(8, 4096), default=1024, show_default=True, help="Output side in pixels.")
@click.option("--five-point", is_flag=True, help="5-point similarity crop for identity networks (ArcFace layout).")
@click.option("--out", "out_path", required=True, metavar="FILE.png", help="Output image (PNG).")
@handle_errors
def align(image: str, size: int, five_point: bool, out_path: str) -> None:
    """Align the largest face of a photo: the FFHQ crop, or the 5-point identity crop.

    \b
    Example:
      insetgan align selfie.jpg --size 1024 --out aligned.png
      insetgan align selfie.jpg --five-point --size 112 --out id.png
    """
    from pathlib import Path

    from insetgan.inversion import align as al

    out = Path(out_path)
    if out.is_dir() or not out.parent.exists():
        raise InsetganError(f"--out {out_path}: not a file path in an existing folder")
    img = al.open_rgb(image)
    face = al.LandmarkDetector().largest(img, image)
    aligned = al.align_five(img, al.five_points(face.landmarks), size) if five_point else \
        al.align_ffhq(img, face.landmarks, size)
    iio.atomic_write_bytes(out, iio.png_bytes(np.asarray(aligned)))
    log.info("wrote %s (%dx%d, %s)", out, size, size, "5-point" if five_point else "FFHQ")


@click.command()
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--network", required=True, metavar="CKPT", help=NETWORK_HELP)
@click.option("--mode", type=click.Choice(["w", "wplus", "pti"]), default="wplus", show_default=True,
              help="Latent space; pti = W pivot, then pivotal tuning of the generator.")
@click.option("--steps", type=click.IntRange(1, 100000), default=InvertConfig.steps, show_default=True,
              help="Projector steps.")
@click.option("--pti-steps", type=click.IntRange(1, 100000), default=PTIConfig.steps, show_default=True)
@click.option("--align/--no-align", default=True, show_default=True,
              help="FFHQ-align the largest face (face networks); --no-align crops the photo to the network's aspect.")
@click.option("--mask", default=None, metavar="MASK",
              help="Invert only a region: a mask in the network's output frame (resized; non-zero = keep).")
@click.option("--identity-weight", type=range_type(WEIGHT_RANGE), default=0.0, show_default=True,
              help="MobileFaceNet identity loss weight (aligned faces only).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the projector's latent noise.")
@job_options
@handle_errors
def invert(images: tuple[str, ...], network: str, mode: str, steps: int, pti_steps: int, align: bool,
           mask: str | None, identity_weight: float, seed: int, perceptual: str, weights: str | None, device: str,
           outdir: str, progress_mode: str) -> None:
    """Project photos into a generator (GAN inversion): latents, reconstructions, metrics.

    Several images are inverted together as one batch. Writes latents.npz (ws [B, L, D] and the
    noise maps; usable as --face-latent/--body-latent), target.png, reconstruction.png,
    compare.png (target | start | result), report.json (PSNR, SSIM, perceptual distance, dlib
    identity distance) and, with --mode pti, tuned.safetensors (the tuned generator).

    \b
    Examples:
      insetgan invert selfie.jpg --network ffhq.pkl --outdir out/me
      insetgan invert a.jpg b.jpg --network ffhq.pkl --mode pti --steps 500 --outdir out/pti
      insetgan invert selfie.jpg --network default-face --outdir out/me
    """
    from insetgan.inversion import embedding
    from insetgan.inversion import photos
    from insetgan.jobs.running import run_invert
    from insetgan.networks import native
    from insetgan.jobs.requests import load_generator_for

    if given("pti_steps") and mode != "pti":
        raise InsetganError("--pti-steps needs --mode pti")
    dev = torch_device(device)
    t0 = time.perf_counter()
    ck, net_info = load_generator_for(network, dev, "--network", None)
    G = ck.generator
    pc = load_perceptual(perceptual, weights, dev, warn=False)
    mask_t = None
    if mask is not None:  # checked before the (slow) face alignment
        _, H, W = G.img_shape
        mask_t = photos.to_tensor(photos.load_photo(mask).convert("L").resize((W, H), Image.BILINEAR), dev)
    target, metric_imgs, infos = photos.load_targets(list(images), G, align, dev)
    identity = None
    if identity_weight > 0:
        if not align:
            raise InsetganError("--identity-weight needs --align (aligned faces)")
        from insetgan.inversion.identity import load_mobilefacenet

        identity = embedding.batch_identity(load_mobilefacenet(device=dev), metric_imgs, G.img_shape[1], dev)
    cfg = InvertConfig(mode="w" if mode == "pti" else mode, steps=steps, seed=seed, identity_weight=identity_weight)
    pti_cfg = PTIConfig(steps=pti_steps) if mode == "pti" else None
    head = report_head("invert", dev, {"network": net_info, "images": infos}, time.perf_counter() - t0, mode=mode,
                       aligned=align, mask=mask, perceptual=pc.name)
    bar, pti_bar = progress_bar("invert", progress_mode, pc.notice), progress_bar("pti", progress_mode)
    try:
        res = run_invert(G, target, cfg, pti_cfg, pc.fn, head, mask_t, identity, metric_imgs, bar, pti_bar)
    finally:
        bar.close()
        pti_bar.close()
    files = dict(res.files)
    if res.tuned is not None:
        files["tuned.safetensors"] = native.to_bytes(res.tuned, extra={"insetgan_pti": {
            "base_sha256": net_info["sha256"], "images": [i["sha256"] for i in infos]}})
    out = write_files(outdir, files)
    m = res.report["metrics"]
    log.info("inverted %d image(s): PSNR %s dB (start %s); wrote %s", len(images),
             ", ".join(f"{v:.2f}" for v in (m.get("tuned") or m["projected"])["psnr"]),
             ", ".join(f"{v:.2f}" for v in m["start"]["psnr"]), out)


COMMANDS = (align, invert)
