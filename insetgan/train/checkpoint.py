"""The resumable training state on disk: :func:`state_dict`, :func:`save_state` and :func:`load_state`.

Checkpoints hold tensors, numbers and strings only, so they load with ``weights_only=True``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from insetgan.errors import InsetganError
from insetgan.io import atomic_write_bytes, encode
from insetgan.networks.torch_files import load_torch_file
from insetgan.train.config import TrainConfig
from insetgan.train.data import ImageSet
from insetgan.train.state import TrainState, build_state
from insetgan.train.step import set_learning_rates

STATE_VERSION = 1


def state_dict(state: TrainState, cfg: TrainConfig) -> dict[str, Any]:
    """The whole training state as tensors, numbers and strings (loads with ``weights_only=True``)."""
    return {"version": STATE_VERSION, "G": state.G.state_dict(), "D": state.D.state_dict(),
            "G_ema": state.G_ema.state_dict(), "opt_G": state.opt_G.state_dict(), "opt_D": state.opt_D.state_dict(),
            "step": state.step, "nimg": state.nimg, "start_nimg": state.start_nimg, "config": json.dumps(cfg.to_dict()),
            "G_config": state.G.cfg.to_json(), "D_config": json.dumps(state.D.cfg.to_dict()),
            "rng_torch": torch.get_rng_state()} | _extra_critics_state(state)


_EXTRA_CRITICS = ("D_face", "D_proj")  # optional critics: state attributes, each with its opt_<name>


def _extra_critics_state(state: TrainState) -> dict[str, Any]:
    out = {}
    for name in _EXTRA_CRITICS:
        net, opt = getattr(state, name), getattr(state, f"opt_{name}")
        if net is not None and opt is not None:
            out |= {name: net.state_dict(), f"opt_{name}": opt.state_dict()}
    return out


def save_state(state: TrainState, cfg: TrainConfig, path: Path) -> None:
    """Write the training state atomically (temporary file, then rename)."""
    atomic_write_bytes(path, encode(lambda buf: torch.save(state_dict(state, cfg), buf)))


def load_state(path: str | Path, cfg: TrainConfig, data: ImageSet, device: torch.device) -> TrainState:
    """Resume: rebuild the networks for ``cfg`` and ``data`` and load a saved state (weights_only)."""
    try:
        sd = load_torch_file(path)  # bounded work; the tensors move to ``device`` as they are loaded below
    except InsetganError as exc:
        raise InsetganError(f"cannot read training state {exc}") from None
    if not isinstance(sd, dict) or sd.get("version") != STATE_VERSION:
        raise InsetganError(f"{path} is not an insetgan training state")
    saved = json.loads(sd["config"])
    arch = ("z_dim", "w_dim", "map_layers", "channel_base", "channel_max", "d_channel_base", "d_channel_max",
            "d_arch", "d_feature_res", "d_head_width", "mbstd_channels", "batch", "seed", "aug", "noise")
    before = {k: saved.get(k, getattr(TrainConfig, k)) for k in arch}  # older states lack newer keys
    changed = [k for k in arch if before[k] != getattr(cfg, k)]
    if (saved.get("face_d", 0) > 0) != (cfg.face_d > 0):  # its weight may change, not whether it exists
        before["face_d"] = saved.get("face_d", 0)
        changed.append("face_d")
    elif cfg.face_d > 0 and (saved.get("face_d_arch") or before["d_arch"]) != (cfg.face_d_arch or cfg.d_arch):
        before["face_d_arch"] = saved.get("face_d_arch") or before["d_arch"]
        changed.append("face_d_arch")
    if (saved.get("proj_d", 0) > 0) != (cfg.proj_d > 0):  # likewise the projected critic
        before["proj_d"] = saved.get("proj_d", 0)
        changed.append("proj_d")
    if changed:
        raise InsetganError(f"--resume: the run was trained with different {', '.join(changed)} "
                         f"({', '.join(f'{k}={before[k]}' for k in changed)})")
    state = build_state(cfg, data, device)
    try:
        extra = [name for name in _EXTRA_CRITICS if getattr(state, name) is not None]
        for name in ("G", "D", "G_ema", *extra):
            getattr(state, name).load_state_dict(sd[name])
        optimisers = [(state.opt_G, sd["opt_G"]), (state.opt_D, sd["opt_D"])]
        optimisers += [(getattr(state, f"opt_{name}"), sd[f"opt_{name}"]) for name in extra]
        for opt, saved_opt in optimisers:
            betas = [g["betas"] for g in opt.param_groups]
            opt.load_state_dict(saved_opt)
            for g, b in zip(opt.param_groups, betas):  # this run's betas; its lrs are set below
                g["betas"] = b
    except (RuntimeError, KeyError, ValueError) as exc:
        raise InsetganError(f"--resume: {path} does not match this dataset/config: {str(exc).splitlines()[0]}") from None
    state.step, state.nimg = int(sd["step"]), int(sd["nimg"])
    state.start_nimg = int(sd.get("start_nimg", 0))  # older states: not warm-started
    set_learning_rates(state, cfg)  # this run's --lr (a resumed run may lower it) and its drop
    torch.set_rng_state(sd["rng_torch"].cpu())
    return state
