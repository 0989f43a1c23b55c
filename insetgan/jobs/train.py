"""The train job: a run folder of snapshots and, at the end, the run's report (rank 0 of a torchrun run)."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from insetgan import io as iio
from insetgan import outputs
from insetgan.devices import torch_device
from insetgan.jobs.progress import ProgressFactory
from insetgan.jobs.report import job_report
from insetgan.jobs.network_requests import TrainRequest
from insetgan.train.data import load_dataset
from insetgan.train.distributed import torchrun_world
from insetgan.train.loop import train


def run_train(req: TrainRequest, outdir: str | Path, progress: ProgressFactory) -> dict[str, Any] | None:
    """Train into the run folder ``outdir`` (made by rank 0; removed again when the run fails before writing
    anything) and write its ``report.json``; the report on rank 0, None on the other ranks."""
    cfg = req.config
    with torchrun_world(torch_device(req.device), cfg.batch) as world:
        dataset = load_dataset(req.data)
        run_folder = outputs.made_folder(outdir) if world.rank == 0 else contextlib.nullcontext(Path(outdir))
        last: dict[str, float] = {}
        with run_folder as out:
            t0 = time.perf_counter()
            bar = progress("train", None) if world.rank == 0 else None

            def step(done: int, total: int, values: dict[str, float]) -> None:
                last.clear()
                last.update(values)
                if bar is not None:
                    bar(done, total, values)

            try:
                state = train(dataset, cfg, out, world.device, req.resume, step, init=req.init_path)
            finally:
                if bar is not None:
                    bar.close()
        if world.rank != 0:
            return None
        inputs = {"data": str(req.data), "dataset": {k: v for k, v in dataset.meta.items() if k != "records"},
                  "images": list(dataset.images.shape)}
        report = job_report(req.command, req, world.device, inputs, {"train": time.perf_counter() - t0},
                            config=cfg.to_dict(), processes=world.size, resumed_from=req.resume,
                            initialised_from=req.init_path, steps=state.step, kimg=state.nimg / 1000,
                            last_losses={k: round(v, 5) for k, v in last.items() if k not in ("kimg", "img/s")}
                            or None)
        iio.atomic_write_bytes(out / "report.json", iio.json_bytes(report))
        return report
