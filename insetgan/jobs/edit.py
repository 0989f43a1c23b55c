"""The edit job: each seed rendered at several strengths of the same direction edits, as one grid and a report."""
from __future__ import annotations

import time

from insetgan.devices import torch_device
from insetgan.editing.directions import load_edits
from insetgan.editing.layers import generator_shape
from insetgan.editing.strip import StripConfig, render_strip, strip_files
from insetgan.jobs.report import JobOutput, finished, job_report
from insetgan.jobs.network_requests import EditRequest
from insetgan.models import load_network

STRIP_CONVENTION = ("W edits add strength*factor*d to the W+ rows after truncation; style edits add "
                    "strength*factor*v_i to layer i's styles")


def run_edit(req: EditRequest) -> JobOutput:
    """Render the strip: ``grid.png`` (rows = seeds, columns = strengths), the tiles and the report."""
    cfg = StripConfig(tuple(req.seed_list()), req.strength_list(), req.sample_config)
    dev = torch_device(req.device)
    t0 = time.perf_counter()
    ckpt, info = load_network(req.network, dev, "--network")
    G = ckpt.generator.eval().requires_grad_(False)
    loaded = load_edits(req.parsed_edits(), generator_shape(G))
    load_s = time.perf_counter() - t0
    images, render_s = render_strip(G, loaded, cfg)
    files = strip_files(images, cfg, req.raw)
    s = cfg.sample
    report = job_report(req.command, req, dev,
                        {"network": {"network": req.network, **info, "architecture": G.cfg.family,
                                     "num_ws": G.num_ws, "w_dim": G.w_dim}},
                        {"load": load_s, "render": render_s},
                        edits=[e.to_dict() for e in loaded], seeds=list(cfg.seeds), strengths=list(cfg.strengths),
                        grid={"rows": "seeds", "columns": "strengths", "tile": "seed{seed:04d}_{column}.png"},
                        settings={"truncation_psi": s.truncation_psi, "truncation_cutoff": s.truncation_cutoff,
                                  "noise_mode": s.noise_mode, "class": s.class_idx, "convention": STRIP_CONVENTION})
    return finished(files, report)
