"""Test helpers that write NVIDIA-format pickles (persistent objects) and malicious pickles."""
from __future__ import annotations

import contextlib
import io
import pickle
import sys
import types

import torch

from insetgan.networks.generator import Generator

PLACEHOLDER_SRC = "# module source omitted from this test fixture\n"


@contextlib.contextmanager
def official_globals():
    """Temporarily register stand-ins named like the official globals so pickle can reference them."""
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")
    dnnlib = types.ModuleType("dnnlib")

    def _reconstruct_persistent_obj(meta):  # never called by the code under test
        raise AssertionError("the real reconstruct function must never be called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    util.EasyDict = EasyDict
    dnnlib.util = util
    saved = {k: sys.modules.get(k) for k in ("torch_utils.persistence", "dnnlib", "dnnlib.util")}
    sys.modules.update({"torch_utils.persistence": persistence, "dnnlib": dnnlib, "dnnlib.util": util})
    try:
        yield persistence, EasyDict
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def official_init_kwargs(G: Generator, flat: bool = False) -> dict:
    """Constructor kwargs as the official training script records them."""
    cfg = G.cfg
    synthesis = {
        "channel_base": cfg.channel_base,
        "channel_max": cfg.channel_max,
        "num_fp16_res": cfg.num_fp16_res,
        "conv_clamp": cfg.conv_clamp,
        "architecture": cfg.architecture,
    }
    mapping = {"num_layers": cfg.mapping_layers, "lr_multiplier": cfg.mapping_lr_multiplier}
    kw = {"z_dim": cfg.z_dim, "w_dim": cfg.w_dim, "mapping_kwargs": mapping}
    if flat:
        kw.update(synthesis)
    else:
        kw["synthesis_kwargs"] = synthesis
    if not cfg.square:
        kw["square"] = False
    kw.update({"c_dim": cfg.c_dim, "img_resolution": cfg.img_resolution, "img_channels": cfg.img_channels})
    return kw


def nvidia_pickle_bytes(
    G: Generator,
    init_kwargs: dict | None = None,
    module_src: str = PLACEHOLDER_SRC,
    class_name: str | None = None,
    protocol: int = 4,
    extra_top: dict | None = None,
    omit: tuple[str, ...] = (),
) -> bytes:
    """Serialise ``G`` the way stylegan2-ada-pytorch snapshots are written."""
    kwargs = init_kwargs if init_kwargs is not None else official_init_kwargs(G)
    with official_globals() as (persistence, EasyDict):

        def easy(d):
            return EasyDict({k: easy(v) for k, v in d.items()}) if isinstance(d, dict) else d

        class SnapshotPickler(pickle.Pickler):
            def reducer_override(self, obj):
                if isinstance(obj, torch.nn.Module):
                    state = {
                        "training": False,
                        "_parameters": dict(obj._parameters),
                        "_buffers": dict(obj._buffers),
                        "_non_persistent_buffers_set": set(),
                        "_modules": dict(obj._modules),
                        "_init_args": (),
                        "_init_kwargs": easy(kwargs) if obj is G else EasyDict(),
                    }
                    name = class_name if (obj is G and class_name) else type(obj).__name__
                    meta = {"type": "class", "version": 6, "module_src": module_src, "class_name": name, "state": state}
                    return persistence._reconstruct_persistent_obj, (meta,)
                return NotImplemented

        snapshot = {"G": G, "D": None, "G_ema": G, "augment_pipe": None}
        snapshot.update(extra_top or {})
        for key in omit:
            snapshot.pop(key)
        buf = io.BytesIO()
        SnapshotPickler(buf, protocol=protocol).dump(snapshot)
        return buf.getvalue()


class Reduce:
    """An object whose unpickling calls ``fn(*args)``: the classic pickle attack."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args
