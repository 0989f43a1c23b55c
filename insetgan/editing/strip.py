"""The strip job: each seed rendered at several strengths of the same edits, as one grid and a report.

Row ``r`` of ``grid.png`` is seed ``seeds[r]``, column ``k`` every edit at ``strengths[k]`` times
its own strength (a spec without ``=α`` has strength 1, so the columns are the strengths
themselves). Each tile is ``seedNNNN_K.png`` (with ``raw``: also the float32 CHW image
``seedNNNN_K.npy``); ``report.json`` records the network, the edits (files and SHA-256), the
strengths and the settings.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from insetgan import io as iio
from insetgan.editing.apply import synthesize_edited
from insetgan.editing.directions import LoadedEdit
from insetgan.editing.samples import sample_ws
from insetgan.editing.spec import STRENGTH_RANGE
from insetgan.errors import InsetganError
from insetgan.sampling import SampleConfig, input_transform

MAX_STRENGTHS = 32
MAX_TILES = 1024


@dataclass(frozen=True)
class StripConfig:
    """Seeds (rows), strength factors (columns) and how to sample."""

    seeds: tuple[int, ...]
    strengths: tuple[float, ...]
    sample: SampleConfig = SampleConfig()

    def __post_init__(self) -> None:
        if not self.seeds:
            raise InsetganError("give at least one seed")
        if not 1 <= len(self.strengths) <= MAX_STRENGTHS:
            raise InsetganError(f"give 1 to {MAX_STRENGTHS} strengths, got {len(self.strengths)}")
        for s in self.strengths:
            STRENGTH_RANGE.check(s, "a strength")
        if len(self.seeds) * len(self.strengths) > MAX_TILES:
            raise InsetganError(f"{len(self.seeds)} seeds × {len(self.strengths)} strengths is over {MAX_TILES} "
                                "images")


def parse_strengths(text: str) -> tuple[float, ...]:
    """``-3,0,3`` as numbers (each finite and within the strength range)."""
    try:
        values = tuple(float(p) for p in str(text).split(","))
    except ValueError:
        raise InsetganError(f"--strengths takes numbers separated by commas (e.g. -3,0,3), got "
                            f"{str(text)[:40]!r}") from None
    for v in values:
        STRENGTH_RANGE.check(v, "each --strengths value")
    return values


@torch.no_grad()
def render_strip(G: torch.nn.Module, edits: Sequence[LoadedEdit], cfg: StripConfig
                 ) -> tuple[list[list[torch.Tensor]], float]:
    """Images [C, H, W] per seed (rows) and strength (columns), batch 1 each, and the seconds taken."""
    cfg.sample.validate(G)
    rows = []
    t0 = time.perf_counter()
    with input_transform(G, cfg.sample):
        for seed in cfg.seeds:
            ws = sample_ws(G, [seed], cfg.sample)
            rows.append([synthesize_edited(G, ws, edits, factor, cfg.sample.noise_mode)[0].float().cpu()
                         for factor in cfg.strengths])
    return rows, time.perf_counter() - t0


def strip_files(images: list[list[torch.Tensor]], cfg: StripConfig, raw: bool) -> dict[str, bytes]:
    """The tiles, ``grid.png`` (rows = seeds, columns = strengths) and with ``raw`` the float32 arrays."""
    files: dict[str, bytes] = {}
    tiles = []
    for seed, row in zip(cfg.seeds, images):
        for k, img in enumerate(row):
            arr = iio.to_uint8(img)
            tiles.append(arr)
            files[f"seed{seed:04d}_{k}.png"] = iio.png_bytes(arr)
            if raw:
                files[f"seed{seed:04d}_{k}.npy"] = iio.npy_bytes(img.numpy().astype(np.float32))
    files["grid.png"] = iio.png_bytes(iio.grid(tiles, cols=len(cfg.strengths)))
    return files


def strip_report(network: dict[str, Any], edits: Sequence[LoadedEdit], cfg: StripConfig, outputs: list[str],
                 seconds: float) -> dict[str, Any]:
    """``report.json`` of a strip: network, edits, seeds, strengths, settings, outputs, versions."""
    s = cfg.sample
    return {"command": "edit", "inputs": {"network": network}, "edits": [e.to_dict() for e in edits],
            "seeds": list(cfg.seeds), "strengths": list(cfg.strengths),
            "grid": {"rows": "seeds", "columns": "strengths", "tile": "seed{seed:04d}_{column}.png"},
            "settings": {"truncation_psi": s.truncation_psi, "truncation_cutoff": s.truncation_cutoff,
                         "noise_mode": s.noise_mode, "class": s.class_idx,
                         "convention": "W edits add strength*factor*d to the W+ rows after truncation; style "
                                       "edits add strength*factor*v_i to layer i's styles"},
            "outputs": sorted(outputs) + ["report.json"], "timings_s": {"render": round(seconds, 4)},
            "versions": iio.versions()}
