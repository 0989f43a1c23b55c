"""The three user jobs (compose, sample-bodies, refine-face) as functions from inputs to output files.

Each job validates its inputs, runs :func:`insetgan.method.optimize.optimize` and returns a dict of
file name → bytes; the CLI writes them atomically. Nothing here touches the file system
except reading the inputs it is given.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from insetgan import io as iio
from insetgan.method import losses as L
from insetgan.inversion.align import open_rgb
from insetgan.method.boxes import (FACE_PRIOR, SHOES_PRIOR, BoxProvider, DlibFaceBox, FixedBox, ManualBox, clamp_box,
                            refine_box)
from insetgan.inversion.identity import dlib_distances, identity_report
from insetgan.eval.keep import FaceVerdict, Given, Judges, face_verdict, measure
from insetgan.latents import read_latent
from insetgan.inversion.invert import InvertConfig, PTIConfig, invert, quality, synthesize
from insetgan.sampling import z_from_seed
from insetgan.method.config import OptimConfig
from insetgan.method.optimize import CanvasInput, InsetInput, Result, composite, crop_boxes, evaluate, naive_paste, optimize, render
from insetgan.method.regions import Box, box_mask
from insetgan.inversion.perceptual import l1_ssim
from insetgan.networks.generator import Generator
from insetgan.errors import InsetganError
from insetgan.progress import Progress
from insetgan.torch_utils.ops.dispatch import device_ops

log = logging.getLogger(__name__)

DETECTORS = ("auto", "dlib", "fixed")


@dataclass(frozen=True)
class LatentSource:
    """Where start latents come from: a seed (mapped with truncation) or a latent file (.npy/.npz)."""

    seed: int | None = None
    path: str | None = None
    key: str = "canvas"
    ws: torch.Tensor | None = None
    label: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-able form for the report."""
        if self.ws is not None:
            return {"inverted": self.label}
        return {"seed": self.seed} if self.path is None else {"latent": self.path, "key": self.key}


def load_latent(path: str, G: Generator, key: str) -> torch.Tensor:
    """W+ [1|B, num_ws, w_dim] from a .npy (w [D], [1, D], W+ [L, D], [B, L, D]) or .npz (array ``key``, or its only array)."""
    return torch.from_numpy(read_latent(path, G.num_ws, G.w_dim, key))


def start_latents(G: Generator, source: LatentSource, trunc: float, device: torch.device) -> torch.Tensor:
    """Start W+ [1|B, L, D] for ``source`` on ``device``."""
    if source.ws is not None:
        return source.ws.to(device)
    if source.path is not None:
        return load_latent(source.path, G, source.key).to(device)
    with torch.no_grad():
        z = z_from_seed(int(source.seed or 0), G.z_dim).to(device)
        return G.mapping(z, None, truncation_psi=trunc)


def load_image(path: str, device: torch.device) -> torch.Tensor:
    """An image file as [1, 3, H, W] in [-1, 1] (EXIF orientation applied; gray/RGBA converted to RGB).

    The scaling ``(u − 127.5) / 127.5`` round-trips exactly through :func:`insetgan.io.to_uint8`.
    """
    arr = np.asarray(open_rgb(path), dtype=np.float32)
    if min(arr.shape[:2]) < 16:
        raise InsetganError(f"image {path} is too small ({arr.shape[1]}x{arr.shape[0]})")
    return ((torch.from_numpy(arr).permute(2, 0, 1)[None] - 127.5) / 127.5).to(device)


def face_provider(detector: str) -> BoxProvider | None:
    """The dlib provider for ``dlib``; ``auto`` gives dlib when it is installed, else ``None``."""
    if detector == "fixed":
        return None
    try:
        return DlibFaceBox()
    except ValueError:
        if detector == "dlib":
            raise
        log.info("dlib is not installed: using the fixed face prior (pip install 'insetgan[face]' for detection)")
        return None


def initial_boxes(canvas: torch.Tensor, manual: Box | None, provider: BoxProvider | None,
                  prior: tuple[float, float, float, float], what: str) -> tuple[list[Box], list[str]]:
    """One start box per candidate: manual, else detected, else the fixed prior (reported in the notes)."""
    H, W = canvas.shape[-2:]
    if manual is not None:
        try:
            box = ManualBox(manual)(canvas)
        except ValueError as exc:
            raise InsetganError(f"--{what}-{exc}") from None
        return [box] * canvas.shape[0], [f"{what} box given manually"]
    boxes, notes = [], []
    fixed = FixedBox(prior)
    for i in range(canvas.shape[0]):
        box = None
        if provider is not None:
            try:
                box = provider(canvas[i:i + 1])
            except Exception as exc:  # noqa: BLE001 - detection failure falls back to the prior
                notes.append(f"candidate {i}: {what} detection failed ({type(exc).__name__}: {exc})")
            if box is not None and not box.inside(H, W):
                box = clamp_box(box, H, W) if box.w <= W and box.h <= H else None
            if box is None:
                notes.append(f"candidate {i}: no {what} detected; using the fixed prior box")
        boxes.append(box if box is not None else fixed(canvas[i:i + 1]))
    if provider is None:
        notes.append(f"{what} box from the fixed prior {prior} (relative x, y, w, h)")
    return boxes, notes


def shoe_boxes(canvas: torch.Tensor, shoes: torch.Tensor, cfg: OptimConfig, manual: Box | None,
               prior_box: tuple[float, float, float, float] = SHOES_PRIOR) -> tuple[list[Box], list[str]]:
    """Shoe boxes: the fixed prior refined per candidate by a local search minimising the coarse L1."""
    if manual is not None:
        return initial_boxes(canvas, manual, None, prior_box, "shoes")
    H, W = canvas.shape[-2:]
    boxes = []
    for i in range(canvas.shape[0]):
        prior = FixedBox(prior_box)(canvas[i:i + 1])

        def cost(b: Box, i: int = i) -> float:
            with torch.no_grad():
                c = crop_boxes(canvas[i:i + 1], [b], tuple(shoes.shape[-2:]))
                return float(L.coarse_loss(c, shoes[i:i + 1], None, cfg.coarse_size)["coarse_l1"])

        boxes.append(refine_box(prior, cost, H, W)[0])
    return boxes, ["shoes box: fixed prior refined by local search on the coarse loss"]


@dataclass
class JobOutput:
    """Files to write (name → bytes) and the report (also among the files)."""

    files: dict[str, bytes]
    report: dict[str, Any]


def _draw_boxes(arr: np.ndarray, boxes: Sequence[Box], scale: int) -> np.ndarray:
    im = Image.fromarray(arr if arr.shape[2] == 3 else np.repeat(arr, 3, 2))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(im)
    for b in boxes:
        draw.rectangle([b.x * scale, b.y * scale, (b.x + b.w) * scale - 1, (b.y + b.h) * scale - 1],
                       outline=(255, 64, 64), width=max(1, scale // 2))
    return np.asarray(im)


def compare_image(start: np.ndarray, naive: np.ndarray, result: np.ndarray,
                  boxes_start: Sequence[Box], boxes_end: Sequence[Box]) -> np.ndarray:
    """start | naive | result (HWC uint8) side by side, boxes drawn on start and result; small canvases enlarged."""
    scale = max(1, 256 // start.shape[0])
    return iio.grid([_draw_boxes(start, boxes_start, scale), _draw_boxes(naive, [], scale),
                     _draw_boxes(result, boxes_end, scale)], cols=3)


def _box_list(boxes: Sequence[Box]) -> list[list[float]]:
    return [[round(v, 3) for v in (b.x, b.y, b.w, b.h, b.angle)] for b in boxes]


def _history_summary(history: list[dict[str, Any]], every: int = 10) -> list[dict[str, Any]]:
    keep = [h for h in history if h["step"] % every == 0] + ([history[-1]] if history else [])
    seen, out = set(), []
    for h in keep:
        if h["step"] not in seen:
            seen.add(h["step"])
            out.append({k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()})
    return out


def _keep_start_face(res: Result, worse: list[bool]) -> Result:
    """``res`` with the start face inset (latents, image, box) in every candidate flagged ``worse``.

    The start face is then blended into the optimised canvas.
    """
    pick = torch.tensor(worse, device=res.insets["face"].device).view(-1, 1, 1, 1)
    insets = dict(res.insets, face=torch.where(pick, res.insets_start["face"], res.insets["face"]))
    inset_ws = dict(res.inset_ws)
    if "face" in res.inset_ws_start:
        inset_ws["face"] = torch.where(pick[:, :, :, 0], res.inset_ws_start["face"].to(res.inset_ws["face"]),
                                       res.inset_ws["face"])
    boxes = dict(res.boxes, face=[s if w else b for s, b, w in zip(res.boxes_start["face"], res.boxes["face"], worse)])
    return dataclasses.replace(res, insets=insets, inset_ws=inset_ws, boxes=boxes)


def package_outputs(res: Result, cfg: OptimConfig, perceptual_name: str, perceptual: L.Perceptual | None,
                    report_head: dict[str, Any], canvas_original: torch.Tensor | None = None,
                    given: Given = Given(), keep_best: bool = False) -> JobOutput:
    """Composite, measure and encode everything a job writes.

    ``canvas_original`` (refine-face) is the input image: pixels outside every box are copied
    from it byte for byte. ``given`` is what the user gave (selfie, outfit, the input image):
    the body drift, outfit distance, the face's dlib score and identity distance are measured
    before and after (:mod:`insetgan.eval.keep`), and a face that got worse is reported with a
    warning; ``keep_best`` then returns the start face (refine-face: the input image unchanged).
    """
    t0 = time.perf_counter()
    refine = canvas_original is not None
    naive = naive_paste(res.canvas_start, res.insets_start, res.boxes_start)
    final = composite(res.canvas, res.insets, res.boxes, cfg.blend, cfg.feather)
    judges = Judges.load()
    start_img = res.canvas_start if refine else naive  # refine-face: the start is the input image
    keep_before = measure(res.canvas_start, start_img, res.boxes_start, given, cfg.feather, perceptual, judges)
    keep_after = measure(res.canvas_start, final, res.boxes, given, cfg.feather, perceptual, judges)
    verdicts = [face_verdict(b.get("face:score"), a.get("face:score"), a.get("face:identity"),
                             given.reference is not None) if judges is not None else FaceVerdict(())
                for b, a in zip(keep_before, keep_after)]
    worse = [v.worse for v in verdicts]
    kept = [w and keep_best for w in worse]
    if any(kept):
        if refine:  # the start face is the input image's own
            final = torch.where(torch.tensor(kept, device=final.device).view(-1, 1, 1, 1), start_img, final)
        else:
            res = _keep_start_face(res, kept)
            final = composite(res.canvas, res.insets, res.boxes, cfg.blend, cfg.feather)
        keep_after = measure(res.canvas_start, final, res.boxes, given, cfg.feather, perceptual, judges)
    before = evaluate(res.canvas_start, res.insets_start, res.boxes_start, naive, cfg, perceptual)
    after = evaluate(res.canvas, res.insets, res.boxes, final, cfg, perceptual)
    for rows, extra in ((before, keep_before), (after, keep_after)):
        for row, more in zip(rows, extra):
            row.update(more)
    warnings = [f"candidate {i}: {reason}" + ("; the start face was kept (--keep-best)" if kept[i] else "")
                for i, v in enumerate(verdicts) for reason in v.reasons]
    for w in warnings:
        log.warning("%s", w)
    face_check = {"reference": given.reference, "dlib": judges is not None,
                  "worse": worse, "kept_start_face": kept, "warnings": warnings}
    batch = final.shape[0]
    files: dict[str, bytes] = {}

    def u8(x: torch.Tensor) -> list[np.ndarray]:
        return [iio.to_uint8(x[i]) for i in range(x.shape[0])]

    results, starts, naives = u8(final), u8(res.canvas_start), u8(naive)
    if canvas_original is not None:
        orig = iio.to_uint8(canvas_original[0])
        for i in range(batch):
            inside = torch.zeros(1, 1, *final.shape[-2:])
            for boxes in res.boxes.values():
                inside = torch.maximum(inside, box_mask(final.shape[-2], final.shape[-1], boxes[i]))
            keep = (inside[0, 0] == 0).numpy()[..., None]
            results[i] = np.where(keep, orig, results[i])
            naives[i] = np.where(keep, orig, naives[i])
    all_boxes_start = [[bs[i] for bs in res.boxes_start.values()] for i in range(batch)]
    all_boxes_end = [[bs[i] for bs in res.boxes.values()] for i in range(batch)]
    # One candidate: plain images; several: grids (a grid of one image is that image) plus result_NNN.png.
    files["result.png"] = iio.png_bytes(iio.grid(results))
    files["canvas.png"] = iio.png_bytes(iio.grid(starts))
    files["naive.png"] = iio.png_bytes(iio.grid(naives))
    for name, img in res.insets.items():
        files[f"{name}.png"] = iio.png_bytes(iio.grid(u8(img)))
        files[f"{name}_start.png"] = iio.png_bytes(iio.grid(u8(res.insets_start[name])))
    if batch > 1:
        for i in range(batch):
            files[f"result_{i:03d}.png"] = iio.png_bytes(results[i])
    rows = []
    for i in range(batch):
        rows.append(compare_image(starts[i], naives[i], results[i], all_boxes_start[i], all_boxes_end[i]))
    files["compare.png"] = iio.png_bytes(iio.grid(rows, cols=1))
    arrays: dict[str, np.ndarray] = {}
    if res.canvas_ws is not None:
        arrays["canvas"] = res.canvas_ws.cpu().numpy().astype(np.float32)
    for name, ws in res.inset_ws.items():
        arrays[name] = ws.cpu().numpy().astype(np.float32)
        arrays[f"boxes_{name}"] = np.array(_box_list(res.boxes[name]), dtype=np.float32)
    files["latents.npz"] = iio.encode(lambda buf: np.savez(buf, **arrays))
    counts: dict[str, int] = {}
    for e in res.box_events:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    report = dict(report_head)
    report.update({
        "config": cfg.to_dict(),
        "perceptual": perceptual_name,
        "boxes": {"start": {n: _box_list(b) for n, b in res.boxes_start.items()},
                  "final": {n: _box_list(b) for n, b in res.boxes.items()},
                  "tracking": counts, "events": res.box_events},
        "metrics": {"before": before, "after": after},
        "face_check": face_check,
        **({"identity": identity_report(given.face_photo, naive, final, res.boxes_start["face"], res.boxes["face"],
                                        judges.descriptor if judges else None)}
           if given.face_photo is not None else {}),
        "losses": _history_summary(res.history),
        "steps": res.steps,
        "timings_s": {**report_head.get("timings_s", {}), "optimize": round(res.seconds, 3),
                      "per_step": round(res.seconds / max(res.steps, 1), 5),
                      "outputs": round(time.perf_counter() - t0, 3)},
        "outputs": sorted(files) + ["report.json"],
        "ops": device_ops(final.device),
    })
    files["report.json"] = iio.json_bytes(report)
    return JobOutput(files, report)


def region_priors(metadata: dict[str, Any]) -> dict[str, tuple[float, float, float, float]]:
    """Region priors (relative x, y, w, h per region) stored in a network's metadata by ``insetgan train``.

    Only the ``face`` and ``shoes`` entries are read; the bookkeeping that ``insetgan prepare``
    stores beside them (``from``: how many boxes each median came from, ``format``) is skipped.
    """
    raw = metadata.get("region_priors")
    if raw is None:
        return {}
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        out = {}
        for name in ("face", "shoes"):
            box = data.get(name)
            if box is None:
                continue
            x, y, w, h = (float(v) for v in box)
            if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1):
                raise InsetganError(box)
            out[str(name)] = (x, y, w, h)
        return out
    except (ValueError, TypeError, AttributeError):
        log.warning("ignoring malformed region_priors in the network metadata")
        return {}


def _check_latent_batch(ws: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    if ws.shape[0] == batch:
        return ws
    if ws.shape[0] == 1:
        return ws.expand(batch, -1, -1).contiguous()
    raise InsetganError(f"{what} latents hold {ws.shape[0]} candidates but {batch} are needed")


@dataclass(frozen=True)
class UserFace:
    """The user's own face in a job: an identity loss for the face inset and the aligned photo for the metric."""

    identity: Callable[[torch.Tensor], torch.Tensor] | None
    photo: Image.Image
    weight: float = 1.0


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
    priors: dict[str, tuple[float, float, float, float]] = dataclasses.field(default_factory=dict)
    outfit: torch.Tensor | None = None  # the outfit photo's person crop [1, 3, H, W] (--outfit)
    outfit_mask: torch.Tensor | None = None  # its person mask [1, 1, H, W] in [0, 1] (None: the whole crop)


def run_compose(inp: ComposeInputs, cfg: OptimConfig, device: torch.device, report_head: dict[str, Any],
                perceptual: L.Perceptual | None = l1_ssim,
                perceptual_name: str = "l1-ssim", progress: Progress | None = None,
                keep_face: bool = False, keep_best: bool = False) -> JobOutput:
    """Compose full bodies: one per body latent source (B candidates optimised in one batch).

    ``keep_face`` (sample-bodies) keeps every candidate's face close to the given face (L_face);
    otherwise the face weights of the preset apply as they are. ``keep_best`` returns the start
    face of a candidate whose face got worse (:func:`package_outputs`).
    """
    body_ws = torch.cat([start_latents(inp.body, s, inp.trunc, device) for s in inp.body_sources])
    batch = body_ws.shape[0]
    face_ws = _check_latent_batch(start_latents(inp.face, inp.face_source, inp.trunc, device), batch, "face")
    with torch.no_grad():
        canvas0 = render(inp.body, body_ws)
    provider = face_provider(inp.detector) if inp.face_box is None else None
    face_boxes, notes = initial_boxes(canvas0, inp.face_box, provider, inp.priors.get("face", FACE_PRIOR), "face")
    user = inp.user_face
    insets = [InsetInput("face", inp.face, face_ws, face_boxes, provider,
                         identity=user.identity if user is not None else None)]
    if inp.shoes is not None:
        shoes_ws = _check_latent_batch(start_latents(inp.shoes, inp.shoes_source, inp.trunc, device), batch, "shoes")
        with torch.no_grad():
            shoes0 = render(inp.shoes, shoes_ws)
        sboxes, snotes = shoe_boxes(canvas0, shoes0, cfg, inp.shoes_box, inp.priors.get("shoes", SHOES_PRIOR))
        notes += snotes
        insets.append(InsetInput("shoes", inp.shoes, shoes_ws, sboxes))
    if keep_face or user is not None:
        w = cfg.inset_weights
        cfg = dataclasses.replace(cfg, inset_weights=dataclasses.replace(
            w, face_l1=max(w.face_l1, 2.0 * max(w.coarse_l1, 1e-3)), face_perceptual=max(w.face_perceptual, 0.4),
            face_identity=user.weight if user is not None and user.identity is not None else w.face_identity))
    res = optimize(CanvasInput(G=inp.body, ws=body_ws), insets, cfg, perceptual, progress)
    head = dict(report_head)
    head["box_notes"] = notes
    head["box_provider"] = {"face": "manual" if inp.face_box else (provider.name if provider else "fixed")}
    given = Given(outfit=inp.outfit, outfit_mask=inp.outfit_mask, face_photo=user.photo if user is not None else None)
    return package_outputs(res, cfg, perceptual_name, perceptual, head, given=given, keep_best=keep_best)


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


def run_refine_face(image: torch.Tensor, face: Generator, face_source: LatentSource | None, face_box: Box | None,
                    cfg: OptimConfig, report_head: dict[str, Any], trunc: float = 0.7,
                    search_seeds: Sequence[int] = tuple(range(16)), detector: str = "auto",
                    perceptual: L.Perceptual | None = l1_ssim,
                    perceptual_name: str = "l1-ssim", progress: Progress | None = None,
                    user_face: UserFace | None = None, keep_best: bool = False) -> JobOutput:
    """Refine the face of a fixed image: only the face latent moves (coarse + border against the image).

    With ``user_face`` (``refine-face --reference``) the face is replaced by the user's: the start
    latent is their inverted face, L_face and the identity loss keep it theirs, and the coarse
    loss matches only the image's low frequencies (16 px) so lighting and pose adapt, not identity.
    """
    device = image.device
    if face.img_channels != image.shape[1]:
        raise InsetganError(f"the face generator has {face.img_channels} channel(s) but the image has {image.shape[1]}")
    if next(face.parameters()).device != device:
        raise InsetganError(f"the face generator is not on {device}, where the image is")
    if face_box is not None:
        boxes, notes = initial_boxes(image, face_box, None, FACE_PRIOR, "face")
    else:
        provider = face_provider("dlib" if detector == "auto" else detector)
        box = provider(image) if provider is not None else None
        if box is None:
            raise InsetganError("no face found in the image: give --face-box x,y,w,h")
        H, W = image.shape[-2:]
        boxes, notes = [clamp_box(box, H, W)], ["face box detected with dlib"]
    head = dict(report_head)
    if face_source is None:
        seed, ws, costs = pick_face_start(face, image, boxes[0], list(search_seeds), trunc, cfg)
        head["face_start"] = {"searched_seeds": list(search_seeds), "coarse_l1": costs, "chosen_seed": seed}
    else:
        ws = _check_latent_batch(start_latents(face, face_source, trunc, device), 1, "face")
        head["face_start"] = face_source.describe()
    w = cfg.inset_weights
    if user_face is None:
        cfg = dataclasses.replace(cfg, inset_weights=dataclasses.replace(w, face_l1=0.0, face_perceptual=0.0))
    else:
        cfg = dataclasses.replace(cfg, coarse_size=min(cfg.coarse_size, 16), inset_weights=dataclasses.replace(
            w, face_l1=max(w.face_l1, 1.0), face_perceptual=max(w.face_perceptual, 0.4),
            face_identity=user_face.weight if user_face.identity is not None else 0.0))
    identity = user_face.identity if user_face is not None else None
    res = optimize(CanvasInput(image=image), [InsetInput("face", face, ws, boxes, identity=identity)], cfg,
                   perceptual, progress)
    head["box_notes"] = notes
    given = Given(face_photo=user_face.photo if user_face is not None else None, original=image)
    return package_outputs(res, cfg, perceptual_name, perceptual, head, canvas_original=image, given=given,
                           keep_best=keep_best)


def sha256(path: str) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class InvertOutput:
    """Files of an ``invert`` run (name → bytes, report included) and the tuned generator (PTI) if any."""

    files: dict[str, bytes]
    report: dict[str, Any]
    tuned: Generator | None


def run_invert(G: Generator, target: torch.Tensor, cfg: InvertConfig, pti: PTIConfig | None,
               perceptual: L.Perceptual | None, report_head: dict[str, Any], mask: torch.Tensor | None = None,
               identity: Callable[[torch.Tensor], torch.Tensor] | None = None,
               metric_imgs: list[Image.Image] | None = None, progress: Progress | None = None,
               pti_progress: Progress | None = None) -> InvertOutput:
    """Project ``target`` (then PTI), measure start / projection / tuned, and encode every output file."""
    res = invert(G, target, cfg, pti, perceptual, mask, identity, progress, pti_progress)
    proj, tuned, pti_s = res.projection, res.tuned, res.pti_seconds
    with torch.no_grad():
        start = synthesize(G, G.w_avg.reshape(1, 1, -1).expand_as(proj.ws).contiguous(), None)
        recon = synthesize(G, proj.ws, proj.noise)
        final = synthesize(tuned, proj.ws, proj.noise) if tuned is not None else recon
    metrics: dict[str, Any] = {"start": quality(start, target, perceptual),
                               "projected": quality(recon, target, perceptual)}
    if tuned is not None:
        metrics["tuned"] = quality(final, target, perceptual)
    if metric_imgs:
        faces = [Image.fromarray(iio.to_uint8(final[i])).resize((256, 256), Image.LANCZOS)
                 for i in range(final.shape[0])]
        try:
            metrics["identity_dlib"] = dlib_distances(metric_imgs, faces)
        except ValueError as exc:
            metrics["identity_dlib"] = f"unavailable: {exc}"

    def u8(x: torch.Tensor) -> list[np.ndarray]:
        return [iio.to_uint8(x[i]) for i in range(x.shape[0])]

    files: dict[str, bytes] = {}
    arrays = {"ws": proj.ws.cpu().numpy(), **{f"noise_{i:02d}": n.cpu().numpy() for i, n in enumerate(proj.noise)}}
    files["latents.npz"] = iio.encode(lambda buf: np.savez(buf, **arrays))
    files["target.png"] = iio.png_bytes(iio.grid(u8(target)))
    files["reconstruction.png"] = iio.png_bytes(iio.grid(u8(final)))
    columns = [u8(target), u8(start), u8(recon)] + ([u8(final)] if tuned is not None else [])
    files["compare.png"] = iio.png_bytes(iio.grid([col[i] for i in range(target.shape[0]) for col in columns],
                                                  cols=len(columns)))
    history = proj.history[:: max(1, len(proj.history) // 50)] + proj.history[-1:]
    report = dict(report_head)
    report.update(config=cfg.to_dict(), pti=pti.to_dict() if pti else None, metrics=metrics,
                  losses=[{k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()} for h in history],
                  ops=device_ops(target.device))
    report["timings_s"] = {**report_head.get("timings_s", {}), "project": round(proj.seconds, 3),
                           "per_step": round(proj.seconds / cfg.steps, 5), "pti": round(pti_s, 3)}
    report["outputs"] = sorted(files) + (["tuned.safetensors"] if tuned is not None else []) + ["report.json"]
    files["report.json"] = iio.json_bytes(report)
    return InvertOutput(files, report, tuned)
