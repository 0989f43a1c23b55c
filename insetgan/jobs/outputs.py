"""What a composition job writes, step by step: composite, measure what the user gave, judge the faces,
put the start face back where asked, evaluate, warn, encode the files and gather the report's sections."""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from insetgan import io as iio
from insetgan.eval.keep import FaceVerdict, Given, Judges, face_verdict, measure
from insetgan.inversion.identity import identity_report
from insetgan.jobs.report import JobOutput
from insetgan.method import losses as L
from insetgan.method.config import OptimConfig
from insetgan.method.optimize import Result, composite, evaluate, naive_paste
from insetgan.method.regions import Box, box_mask

log = logging.getLogger("insetgan")


@dataclass
class Judged:
    """The final images of a job and what was measured on them: per candidate, the kept-input rows before
    and after, the face verdicts and whether the start face was put back."""

    res: Result
    final: torch.Tensor
    naive: torch.Tensor
    judges: Judges | None
    before: list[dict[str, Any]]
    after: list[dict[str, Any]]
    verdicts: list[FaceVerdict]
    kept: list[bool]


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


def box_list(boxes: Sequence[Box]) -> list[list[float]]:
    """Boxes as rounded ``[x, y, w, h, angle]`` rows."""
    return [[round(v, 3) for v in (b.x, b.y, b.w, b.h, b.angle)] for b in boxes]


def history_summary(history: list[dict[str, Any]], every: int = 10) -> list[dict[str, Any]]:
    """Every ``every``-th step of a loss history and its last step, values rounded."""
    keep = [h for h in history if h["step"] % every == 0] + ([history[-1]] if history else [])
    seen, out = set(), []
    for h in keep:
        if h["step"] not in seen:
            seen.add(h["step"])
            out.append({k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()})
    return out


def keep_start_face(res: Result, worse: list[bool]) -> Result:
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


def judge(res: Result, cfg: OptimConfig, perceptual: L.Perceptual | None, given: Given, refine: bool,
          keep_best: bool, judges: Judges | None = None) -> Judged:
    """Composite, measure what the user gave before and after, judge each face, and (``keep_best``) put the
    start face back where it got worse (refine-face: the input image itself). ``judges``: the job's loaded
    dlib models (loaded here when not given)."""
    naive = naive_paste(res.canvas_start, res.insets_start, res.boxes_start)
    final = composite(res.canvas, res.insets, res.boxes, cfg.blend, cfg.feather)
    judges = judges or Judges.load()
    start = res.canvas_start if refine else naive  # refine-face: the start is the input image
    before = measure(res.canvas_start, start, res.boxes_start, given, cfg.feather, perceptual, judges)
    after = measure(res.canvas_start, final, res.boxes, given, cfg.feather, perceptual, judges)
    verdicts = [face_verdict(b.get("face:score"), a.get("face:score"), a.get("face:identity"),
                             given.reference is not None) if judges is not None else FaceVerdict(())
                for b, a in zip(before, after)]
    kept = [v.worse and keep_best for v in verdicts]
    if any(kept):
        if refine:  # the start face is the input image's own
            final = torch.where(torch.tensor(kept, device=final.device).view(-1, 1, 1, 1), start, final)
        else:
            res = keep_start_face(res, kept)
            final = composite(res.canvas, res.insets, res.boxes, cfg.blend, cfg.feather)
        after = measure(res.canvas_start, final, res.boxes, given, cfg.feather, perceptual, judges)
    return Judged(res, final, naive, judges, before, after, verdicts, kept)


def metrics(j: Judged, cfg: OptimConfig, perceptual: L.Perceptual | None) -> dict[str, list[dict[str, Any]]]:
    """The seam and fidelity metrics of the naive paste and the result, with what was measured on each."""
    res = j.res
    before = evaluate(res.canvas_start, res.insets_start, res.boxes_start, j.naive, cfg, perceptual)
    after = evaluate(res.canvas, res.insets, res.boxes, j.final, cfg, perceptual)
    for rows, extra in ((before, j.before), (after, j.after)):
        for row, more in zip(rows, extra):
            row.update(more)
    return {"before": before, "after": after}


def face_check(j: Judged, given: Given) -> dict[str, Any]:
    """The face check of the report; each reason a face got worse is logged as a warning."""
    warnings = [f"candidate {i}: {reason}" + ("; the start face was kept (--keep-best)" if j.kept[i] else "")
                for i, v in enumerate(j.verdicts) for reason in v.reasons]
    for w in warnings:
        log.warning("%s", w)
    return {"reference": given.reference, "dlib": j.judges is not None, "worse": [v.worse for v in j.verdicts],
            "kept_start_face": j.kept, "warnings": warnings}


def _u8(x: torch.Tensor) -> list[np.ndarray]:
    return [iio.to_uint8(x[i]) for i in range(x.shape[0])]


def outside_original(j: Judged, original: torch.Tensor, images: list[np.ndarray]) -> list[np.ndarray]:
    """``images`` with every pixel outside the boxes copied from the ``original`` image byte for byte."""
    orig = iio.to_uint8(original[0])
    out = []
    for i, img in enumerate(images):
        inside = torch.zeros(1, 1, *j.final.shape[-2:])
        for boxes in j.res.boxes.values():
            inside = torch.maximum(inside, box_mask(j.final.shape[-2], j.final.shape[-1], boxes[i]))
        out.append(np.where((inside[0, 0] == 0).numpy()[..., None], orig, img))
    return out


def encode_images(j: Judged, original: torch.Tensor | None) -> dict[str, bytes]:
    """The job's images and latents: result, canvas, naive paste, insets, per-candidate results, compare.png
    and latents.npz. One candidate: plain images; several: grids plus ``result_NNN.png``."""
    res = j.res
    results, starts, naives = _u8(j.final), _u8(res.canvas_start), _u8(j.naive)
    if original is not None:
        results, naives = outside_original(j, original, results), outside_original(j, original, naives)
    files = {"result.png": iio.png_bytes(iio.grid(results)), "canvas.png": iio.png_bytes(iio.grid(starts)),
             "naive.png": iio.png_bytes(iio.grid(naives))}
    for name, img in res.insets.items():
        files[f"{name}.png"] = iio.png_bytes(iio.grid(_u8(img)))
        files[f"{name}_start.png"] = iio.png_bytes(iio.grid(_u8(res.insets_start[name])))
    if len(results) > 1:
        for i, result in enumerate(results):
            files[f"result_{i:03d}.png"] = iio.png_bytes(result)
    rows = [compare_image(starts[i], naives[i], results[i], [bs[i] for bs in res.boxes_start.values()],
                          [bs[i] for bs in res.boxes.values()]) for i in range(len(results))]
    files["compare.png"] = iio.png_bytes(iio.grid(rows, cols=1))
    arrays: dict[str, np.ndarray] = {}
    if res.canvas_ws is not None:
        arrays["canvas"] = res.canvas_ws.cpu().numpy().astype(np.float32)
    for name, ws in res.inset_ws.items():
        arrays[name] = ws.cpu().numpy().astype(np.float32)
        arrays[f"boxes_{name}"] = np.array(box_list(res.boxes[name]), dtype=np.float32)
    files["latents.npz"] = iio.encode(lambda buf: np.savez(buf, **arrays))
    return files


def package_outputs(res: Result, cfg: OptimConfig, perceptual: L.Perceptual | None, perceptual_name: str,
                    given: Given = Given(), original: torch.Tensor | None = None, keep_best: bool = False,
                    judges: Judges | None = None) -> JobOutput:
    """Composite, measure and encode everything a composition job writes; the report holds its sections.

    ``original`` (refine-face) is the input image: pixels outside every box are copied from it
    byte for byte. ``given`` is what the user gave (selfie, outfit, the input image): the body
    drift, outfit distance, the face's dlib score and identity distance are measured before and
    after (:mod:`insetgan.eval.keep`), and a face that got worse is reported with a warning;
    ``keep_best`` then returns the start face (refine-face: the input image unchanged).
    """
    t0 = time.perf_counter()
    j = judge(res, cfg, perceptual, given, original is not None, keep_best, judges)
    sections: dict[str, Any] = {"metrics": metrics(j, cfg, perceptual), "face_check": face_check(j, given)}
    if given.face_photo is not None:
        sections["identity"] = identity_report(given.face_photo, j.naive, j.final, j.res.boxes_start["face"],
                                               j.res.boxes["face"], j.judges.descriptor if j.judges else None)
    files = encode_images(j, original)
    counts: dict[str, int] = {}
    for e in j.res.box_events:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    report = {"config": cfg.to_dict(), "perceptual": perceptual_name,
              "boxes": {"start": {n: box_list(b) for n, b in j.res.boxes_start.items()},
                        "final": {n: box_list(b) for n, b in j.res.boxes.items()},
                        "tracking": counts, "events": j.res.box_events},
              **sections, "losses": history_summary(j.res.history), "steps": j.res.steps,
              "timings_s": {"optimize": round(j.res.seconds, 3),
                            "per_step": round(j.res.seconds / max(j.res.steps, 1), 5),
                            "outputs": round(time.perf_counter() - t0, 3)}}
    return JobOutput(files, report)
