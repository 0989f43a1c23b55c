"""The train-encoder job: a run folder of encoder snapshots and, at the end, the run's report."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from insetgan import io as iio
from insetgan import outputs
from insetgan.devices import torch_device
from insetgan.errors import InsetganError
from insetgan.inversion.encoder_run import train_encoder
from insetgan.jobs.progress import ProgressFactory
from insetgan.jobs.report import job_report
from insetgan.jobs.network_requests import TrainEncoderRequest
from insetgan.models import resolve_network
from insetgan.networks.checkpoints import load_checkpoint
from insetgan.networks.generator import Generator
from insetgan.train.data import ImageSet, load_dataset

STATE_NAME = re.compile(r"state-(\d{6,})\.pt")


def latest_state(outdir: Path) -> Path:
    """The newest ``state-KKKKKK.pt`` of a run folder; a one-line error when there is none."""
    states = sorted((int(m.group(1)), p) for p in outdir.glob("state-*.pt") if (m := STATE_NAME.fullmatch(p.name)))
    if not states:
        raise InsetganError(f"--resume: no state-*.pt in {outdir} to continue from")
    return states[-1][1]


def load_inputs(network: str, data: str, device: Any) -> tuple[Generator, ImageSet]:
    """The generator (a StyleGAN2 one) and the prepared dataset, with one-line errors."""
    path = resolve_network(network)
    if not Path(path).is_file():
        raise InsetganError(f"--network: checkpoint not found (no such file): {path}")
    G = load_checkpoint(path, device).generator
    if not isinstance(G, Generator):
        raise InsetganError(f"--network: {path} holds a {G.cfg.family} generator; the encoder needs a StyleGAN2 one")
    if not Path(data).exists():
        raise InsetganError(f"--data: no such dataset: {data}")
    return G, load_dataset(data)


def run_train_encoder(req: TrainEncoderRequest, outdir: str | Path, progress: ProgressFactory) -> dict[str, Any]:
    """Train into the run folder ``outdir`` (resuming its newest state with ``resume``) and write its report."""
    cfg = req.config
    state_path = latest_state(Path(outdir)) if req.resume else None
    if not req.resume and any(Path(outdir).glob("state-*.pt")):
        raise InsetganError(f"--outdir {outdir} already holds a run (state-*.pt): add --resume or choose another folder")
    dev = torch_device(req.device)
    G, dataset = load_inputs(req.network, req.data, dev)
    with outputs.made_folder(outdir) as out:
        t0 = time.perf_counter()
        bar = progress("train-encoder", None)
        try:
            state = train_encoder(G, dataset, cfg, out, dev, str(state_path) if state_path else None, bar)
        finally:
            bar.close()
        report = job_report(req.command, req, dev, {"network": req.network, "data": str(req.data)},
                            {"train": time.perf_counter() - t0}, config=cfg.to_dict(),
                            encoder=state.encoder.cfg.to_dict(), generator_sha256=state.generator_sha256,
                            resumed_from=str(state_path) if state_path else None, steps=state.step,
                            kimg=state.nimg / 1000)
        iio.atomic_write_bytes(out / "report.json", iio.json_bytes(report))
    return report
