"""Every job's report, assembled by one function, and the headline numbers the front ends show."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from insetgan import io as iio
from insetgan.jobs.options import settings
from insetgan.torch_utils.ops.dispatch import device_ops


@dataclass
class JobOutput:
    """A job's files (name → bytes; ``report.json`` among them once finished) and its report."""

    files: dict[str, bytes]
    report: dict[str, Any]


@dataclass
class RequestOutput:
    """A finished request: its job's files and report, and the new entries of the inversion cache."""

    job: JobOutput
    cache_files: dict[str, bytes]


def job_report(command: str, request: Any, device: torch.device | str, inputs: dict[str, Any],
               timings: dict[str, float], **sections: Any) -> dict[str, Any]:
    """A job's report: the command, the request's user-level settings, inputs, device, the job's own
    ``sections``, timings (seconds), versions and the op implementations used on ``device``."""
    return {"command": command, "request": settings(request), "inputs": inputs, "device": str(device), **sections,
            "timings_s": {k: round(v, 5) if isinstance(v, float) else v for k, v in timings.items()},
            "versions": iio.versions(), "ops": device_ops(torch.device(device))}


def finished(files: dict[str, bytes], report: dict[str, Any]) -> JobOutput:
    """The job's files with ``report.json``; the report lists every output."""
    report = {**report, "outputs": sorted(files) + ["report.json"]}
    return JobOutput({**files, "report.json": iio.json_bytes(report)}, report)


def complete(out: JobOutput, request: Any, device: torch.device, inputs: dict[str, Any], load_s: float,
             **sections: Any) -> JobOutput:
    """A composition job's finished output: its sections (``out.report``) and ``sections`` in the job's report,
    with the load time before its own timings."""
    own = {k: v for k, v in out.report.items() if k != "timings_s"}
    report = job_report(request.command, request, device, inputs, {"load": load_s, **out.report["timings_s"]},
                        **sections, **own)
    return finished(out.files, report)


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f}"


def summary(report: dict[str, Any], markdown: bool = False) -> str:
    """The headline numbers of a composition report (its first candidate): seam, identity, face score,
    body drift and outfit distance, as one log line or (``markdown``) as the page's lines."""
    before, after = report["metrics"]["before"][0], report["metrics"]["after"][0]

    def change(key: str, arrow: str) -> str | None:
        return f"{_number(before.get(key))} {arrow} {_number(after.get(key))}" if key in after else None

    if not markdown:
        n = len(report["metrics"]["after"])
        parts = [("seam", change("face:seam", "->")), ("body drift", f"{after['body_drift_l1']:.3f}"),
                 ("outfit L1", change("outfit_l1", "->")), ("face score", change("face:score", "->")),
                 ("identity", change("face:identity", "->"))]
        text = ", ".join(f"{label} {value}" for label, value in parts if value)
        return text + (f" (candidate 0 of {n})" if n > 1 else "")
    ident = report.get("identity")
    lines = [("Seam score", f": naive paste {_number(before.get('face:seam'))} → result "
                            f"{_number(after.get('face:seam'))}"),
             ("Identity distance", f" to your selfie: {_number(ident['before'][0])} → {_number(ident['after'][0])} "
                                   f"(same person below {ident['same_person_below']})" if ident else None),
             ("Face score", f" (dlib): {change('face:score', '→')}" if "face:score" in after else None),
             ("Body drift", f" (L1): {_number(after.get('body_drift_l1'))}"),
             ("Outfit distance", f" (L1): {change('outfit_l1', '→')}" if "outfit_l1" in after else None)]
    shown = [f"**{label}**{text}" for label, text in lines if text]
    return "\n\n".join(shown + [f"⚠ {w}" for w in report.get("face_check", {}).get("warnings", [])])
