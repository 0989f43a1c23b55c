"""Test helpers that write NVIDIA-format pickles (persistent objects) and malicious pickles."""
from __future__ import annotations

import contextlib
import io
import pickle
import struct
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


# Raw pickle opcodes, for crafted streams the pickler cannot write (or would hang writing).
def op_global(module: str, name: str) -> bytes:
    """GLOBAL: push ``module.name`` (resolved by the unpickler's find_class)."""
    return b"c" + f"{module}\n{name}\n".encode()


def op_str(text: str) -> bytes:
    """BINUNICODE: push a string."""
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def op_int(n: int) -> bytes:
    """BININT: push a 32-bit integer."""
    return b"J" + struct.pack("<i", n)


def op_put(index: int) -> bytes:
    """LONG_BINPUT: store the top of the stack in memo slot ``index``."""
    return b"r" + struct.pack("<I", index)


def op_get(index: int) -> bytes:
    """LONG_BINGET: push memo slot ``index``."""
    return b"j" + struct.pack("<I", index)


def persistent_record(class_name: str, modules: dict[str, bytes]) -> bytes:
    """Opcodes that push an official persistent record whose ``_modules`` holds the given pushes."""
    out = op_global("torch_utils.persistence", "_reconstruct_persistent_obj") + b"}("
    out += op_str("type") + op_str("class") + op_str("class_name") + op_str(class_name)
    out += op_str("version") + op_int(6) + op_str("state") + b"}(" + op_str("_modules") + b"}("
    for name, push in modules.items():
        out += op_str(name) + push
    return out + b"uuu\x85R"  # close _modules, state, meta; call with (meta,)


def module_chain_pickle(depth: int, shared: bool = False) -> bytes:
    """A snapshot whose G_ema nests ``depth`` levels of sub-modules.

    With ``shared`` each level holds the level below twice (``a`` and ``b``), so the tree has
    2**depth paths but the pickle only ``depth`` records.
    """
    out = b"\x80\x02" + persistent_record("Leaf", {}) + op_put(0) + b"0"
    for i in range(1, depth + 1):
        children = {"a": op_get(i - 1), **({"b": op_get(i - 1)} if shared else {})}
        out += persistent_record("Generator" if i == depth else "Block", children) + op_put(i) + b"0"
    return out + b"}" + op_str("G_ema") + op_get(depth) + b"s."


def tuple_tree_pickle(depth: int, as_key: bool = True) -> bytes:
    """A tuple holding the tuple below twice, ``depth`` levels (2**depth leaves), made a dict key."""
    out = b"\x80\x02)" + op_put(0) + b"0"
    for i in range(1, depth + 1):
        out += op_get(i - 1) + op_get(i - 1) + b"\x86" + op_put(i) + b"0"
    if as_key:
        return out + b"}" + op_get(depth) + op_int(1) + b"s."
    return out + op_get(depth) + b"."
