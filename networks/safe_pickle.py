"""A restricted unpickler for NVIDIA-format StyleGAN pickles that never runs embedded code.

Official snapshots store every network as ``_reconstruct_persistent_obj(meta)`` where ``meta``
carries the defining module's source text. The official loader executes that source; here
the call is mapped to :class:`PersistentRecord`, which only keeps the class name and the
pickled ``__dict__``. Every other global must be on a short allow-list (tensor and storage
rebuilders, ``OrderedDict``, ``EasyDict``, numpy scalars and dtypes); anything else raises
:class:`UnsafePickleError` naming the global, before it could be imported or called.

The work is bounded (:class:`insetgan.networks.pickle_scan.PickleLimits`): the stream and each
embedded tensor storage are scanned before they are unpickled, the allow-listed constructors
count what they allocate, and the walks over the result (sub-modules, state dict, constructor
arguments) visit each object once, refuse cycles and deep nesting, and bound the size of what
they hand on. Any failure is one :class:`CheckpointError` line.
"""
from __future__ import annotations

import collections
import functools
import io
import pickle
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from insetgan.networks.errors import CheckpointError, UnsafePickleError, one_line, short_repr, short_text
from insetgan.networks.pickle_scan import DEFAULT_LIMITS, Budget, PickleLimits, scan_pickle
from insetgan.networks.torch_files import LEGACY_MAGIC, refusal, scan_legacy

# numpy kinds a checkpoint's arrays and scalars may have: bool, integers, floats, complex;
# scalars may also be strings.
_ARRAY_KINDS = frozenset("biufc")
_SCALAR_KINDS = frozenset("biufcUS")
_LEAVES = (str, bytes, int, float, complex, type(None))


@dataclass(frozen=True)
class PersistentRecord:
    """What an official persistent object becomes: its class name and pickled state."""

    class_name: str
    version: int
    state: dict

    def __setstate__(self, state: Any) -> None:
        """Official pickles never modify a persistent object after creating it; refuse it."""
        raise UnsafePickleError("refusing to load: the pickle modifies a recorded network object (BUILD)")

    def init_kwargs(self, limits: PickleLimits = DEFAULT_LIMITS) -> dict:
        """The recorded constructor keyword arguments, as plain nested values (bounded, see :func:`plain`)."""
        kwargs = plain(self.state.get("_init_kwargs") or {}, limits, f"{self.class_name} init kwargs")
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise CheckpointError(f"{self.class_name} init kwargs are not a dict of named arguments")
        return kwargs

    def init_args(self, limits: PickleLimits = DEFAULT_LIMITS) -> tuple:
        """The recorded positional constructor arguments (bounded, see :func:`plain`)."""
        args = plain(self.state.get("_init_args") or (), limits, f"{self.class_name} init args")
        if not isinstance(args, (list, tuple)):
            raise CheckpointError(f"{self.class_name} init args are a {type(args).__name__}, not a tuple")
        return tuple(args)

    def attribute(self, name: str, limits: PickleLimits = DEFAULT_LIMITS) -> Any:
        """A recorded attribute as a plain value (bounded, see :func:`plain`); None when absent."""
        return plain(self.state.get(name), limits, f"{self.class_name}.{name}")

    def children(self) -> dict[str, "PersistentRecord"]:
        """Sub-modules recorded in ``_modules`` (None entries skipped); anything else there is refused."""
        modules = self.state.get("_modules") or {}
        if not isinstance(modules, dict):
            raise CheckpointError(f"{self.class_name}._modules is a {type(modules).__name__}, not a dict")
        out = {}
        for name, child in modules.items():
            if child is None:
                continue
            if not isinstance(name, str) or not isinstance(child, PersistentRecord):
                raise CheckpointError(f"sub-module {short_repr(name)} of a {self.class_name} is not a recorded "
                                      "network object")
            out[name] = child
        return out

    def modules(self, limits: PickleLimits = DEFAULT_LIMITS) -> list[tuple[str, "PersistentRecord"]]:
        """``(path, record)`` for this record and every nested one, depth first, each visited once.

        A sub-module reached twice (shared or cyclic), nesting deeper than ``limits.max_depth``
        or more than ``limits.max_nodes`` modules is a :class:`CheckpointError`.
        """
        out: list[tuple[str, PersistentRecord]] = []
        seen: dict[int, str] = {}
        todo: list[tuple[str, PersistentRecord, int]] = [("", self, 0)]
        while todo:
            path, rec, depth = todo.pop()
            if id(rec) in seen:
                first = seen[id(rec)] or "the network itself"
                raise CheckpointError(f"sub-module {short_text(path)} is also {short_text(first)}: shared or cyclic "
                                      "sub-modules are not supported")
            if depth > limits.max_depth:
                raise CheckpointError(f"sub-modules nest more than {limits.max_depth} levels deep (limit)")
            if len(out) >= limits.max_nodes:
                raise CheckpointError(f"network has more than {limits.max_nodes:,} sub-modules (limit)")
            seen[id(rec)] = path
            out.append((path, rec))
            for name, child in reversed(list(rec.children().items())):
                todo.append((f"{path}.{name}" if path else name, child, depth + 1))
        return out

    def walk(self, limits: PickleLimits = DEFAULT_LIMITS) -> list[tuple[str, "PersistentRecord"]]:
        """Alias of :meth:`modules`."""
        return self.modules(limits)

    def state_dict(self, limits: PickleLimits = DEFAULT_LIMITS) -> "collections.OrderedDict[str, torch.Tensor]":
        """Parameters and persistent buffers of this module tree, keyed like ``nn.Module.state_dict``."""
        out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
        for path, rec in self.modules(limits):
            prefix = f"{path}." if path else ""
            skip = rec.state.get("_non_persistent_buffers_set") or ()
            if not isinstance(skip, (set, frozenset, list, tuple)):
                raise CheckpointError(f"{prefix}_non_persistent_buffers_set is a {type(skip).__name__}")
            for group in ("_parameters", "_buffers"):
                entries = rec.state.get(group) or {}
                if not isinstance(entries, dict):
                    raise CheckpointError(f"{prefix}{group} is a {type(entries).__name__}, not a dict")
                for name, tensor in entries.items():
                    if not isinstance(name, str):
                        raise CheckpointError(f"{prefix}{group} has a non-string key {short_repr(name)}")
                    if tensor is None or (group == "_buffers" and name in skip):
                        continue
                    if not isinstance(tensor, torch.Tensor):
                        raise CheckpointError(f"{prefix}{name} is a {type(tensor).__name__}, not a tensor")
                    out[prefix + name] = tensor
        return out


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (attribute access is not needed)."""


def plain(value: Any, limits: PickleLimits = DEFAULT_LIMITS, what: str = "value") -> Any:
    """``value`` as plain Python data: dict subclasses as dicts, numpy scalars as numbers.

    Each object is converted once (a shared part stays shared in the result), and the walk is
    bounded: a cycle, nesting deeper than ``limits.max_depth``, an expanded size (shared parts
    counted once per reference) over ``limits.max_nodes`` or an object that is not plain data
    is a :class:`CheckpointError`. Whatever reads the result (repr, numpy, loops) therefore does
    bounded work too. Arrays and tensors are kept as they are (arrays of numbers only).
    """
    memo: dict[int, tuple[Any, int]] = {}
    active: set[int] = set()

    def convert(x: Any, depth: int) -> tuple[Any, int]:
        if isinstance(x, _LEAVES):
            return x, 1
        if isinstance(x, np.generic):
            if x.dtype.kind not in _SCALAR_KINDS:
                raise CheckpointError(f"{what} holds a numpy scalar of kind {x.dtype.kind!r}")
            return x.item(), 1
        key = id(x)
        if key in memo:
            return memo[key]
        if key in active:
            raise CheckpointError(f"{what} contains itself (a reference cycle)")
        if depth > limits.max_depth:
            raise CheckpointError(f"{what} nests more than {limits.max_depth} levels deep (limit)")
        active.add(key)
        if isinstance(x, dict):
            pairs = [(convert(k, depth + 1), convert(v, depth + 1)) for k, v in x.items()]
            result: Any = {k: v for (k, _), (v, _) in pairs}
            size = 1 + sum(a + b for (_, a), (_, b) in pairs)
        elif isinstance(x, (list, tuple, set, frozenset)):
            items = [convert(v, depth + 1) for v in x]
            kind = type(x) if type(x) in (list, tuple, set, frozenset) else list
            result = kind(v for v, _ in items)
            size = 1 + sum(n for _, n in items)
        elif isinstance(x, np.ndarray):
            if x.dtype.kind not in _ARRAY_KINDS or x.dtype.fields is not None:
                raise CheckpointError(f"{what} holds a numpy array of dtype {x.dtype}")
            result, size = x, 1 + x.size
        elif isinstance(x, torch.Tensor):
            result, size = x, 1
        else:
            raise CheckpointError(f"{what} holds a {type(x).__name__}, which is not plain data")
        active.discard(key)
        if size > limits.max_nodes:
            raise CheckpointError(f"{what} expands to more than {limits.max_nodes:,} values, counting shared "
                                  "parts once per reference (limit)")
        memo[key] = (result, size)
        return memo[key]

    return convert(value, 0)[0]


def _record_persistent(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise CheckpointError("malformed persistent object in pickle (expected a recorded class instance)")
    name, version = meta.get("class_name"), meta.get("version", 0)
    if not isinstance(name, str) or not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError("malformed persistent object in pickle (class name or version of the wrong type)")
    # meta['module_src'] is deliberately ignored: it is never compiled or executed.
    return PersistentRecord(name, version, meta["state"])


def _load_storage(budget: Budget, data: bytes) -> Any:
    """A tensor storage from the legacy ``torch.save`` bytes official pickles embed, scanned first."""
    if not isinstance(data, (bytes, bytearray)) or bytes(data[: len(LEGACY_MAGIC)]) != LEGACY_MAGIC:
        raise UnsafePickleError("refusing to load: a tensor storage is not the legacy torch.save stream official "
                                "pickles embed")
    scan_legacy(io.BytesIO(data), budget)
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError/... with details
        raise UnsafePickleError(f"a tensor storage blob was refused by torch's weights-only loader: "
                                f"{refusal(exc)}") from None


def _check_hooks(hooks: Any) -> None:
    if hooks:
        raise UnsafePickleError("tensor with backward hooks refused")


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    _check_hooks(hooks)
    if metadata:
        raise UnsafePickleError("tensor metadata in pickle refused")
    return torch._utils._rebuild_tensor(storage, offset, size, stride)


def _rebuild_tensor(storage, offset, size, stride):
    return torch._utils._rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    _check_hooks(hooks)
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("parameter data is not a tensor")
    return data


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """``numpy.dtype(spec, align, copy)`` for a short type string (what numpy pickles hold)."""
    if not isinstance(spec, str) or len(spec) > 16 or not all(isinstance(a, bool) for a in (align, copy)):
        raise UnsafePickleError("numpy dtype from anything but a short type string refused")
    dtype = np.dtype(spec, align, copy)
    if dtype.hasobject:
        raise UnsafePickleError("numpy object dtype in pickle refused")
    return dtype


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _SCALAR_KINDS or dtype.fields is not None \
            or not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("numpy scalar with unsupported payload refused")
    return np.frombuffer(bytes(data), dtype=dtype)[0]


def _numpy_reconstruct(budget: Budget, cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    """The empty array numpy pickles start from (its data follows in a BUILD); its size counts against ``budget``."""
    if cls is not np.ndarray:
        raise UnsafePickleError("numpy array reconstruction of a non-ndarray class refused")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape) \
            or len(shape) > budget.limits.max_depth:
        raise CheckpointError("numpy array with an invalid shape")
    dtype = np.dtype(typecode) if isinstance(typecode, (str, bytes)) else None
    if dtype is None or dtype.kind not in _ARRAY_KINDS or dtype.fields is not None:
        raise UnsafePickleError("numpy array of a non-numeric type refused")
    budget.spend_bytes(int(np.prod(shape, dtype=object)) * dtype.itemsize, "a numpy array")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _safe_set(items: Any = ()) -> set:
    items = list(items) if isinstance(items, (list, tuple)) else None
    if items is None or not all(isinstance(i, (str, int)) for i in items):
        raise UnsafePickleError("set of non-string items refused")
    return set(items)


ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _record_persistent,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    # Pickle protocols <= 3 (the released 2020/21 checkpoints) write a module's empty
    # ``_non_persistent_buffers_set`` as builtins.set([]); the stand-in accepts only names.
    ("builtins", "set"): _safe_set,
}
# Allow-listed constructors that allocate: each load binds them to its budget.
BUDGETED: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only resolves allow-listed globals.

    The allocating constructors count what they allocate against ``budget`` (a fresh one with
    the default limits when omitted).
    """

    def __init__(self, file: io.BufferedIOBase, budget: Budget | None = None) -> None:
        super().__init__(file)
        self.budget = budget or Budget()

    def find_class(self, module: str, name: str) -> Any:
        """Return the safe stand-in for ``module.name`` or refuse it."""
        if (module, name) in BUDGETED:
            return functools.partial(BUDGETED[(module, name)], self.budget)
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load: the pickle references the global '{module}.{name}', which is not on "
                "the allow-list of safe StyleGAN objects (nothing was executed)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids only occur in torch.save streams, never in NVIDIA pickles."""
        raise UnsafePickleError("refusing to load: unexpected persistent id in pickle")


def safe_load_pickle(data: bytes, limits: PickleLimits = DEFAULT_LIMITS) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` after a bounded scan (see :mod:`pickle_scan`).

    Every failure — a limit, a refused global, and any error of the unpickler or of the
    allow-listed constructors on malformed input (truncation, overflowing lengths, bad UTF-8,
    exhausted memory, …) — is one :class:`CheckpointError` line.
    """
    budget = Budget(limits)
    try:
        budget.spend_bytes(len(data), "the pickle")
        scan_pickle(io.BytesIO(data), budget)
        return RestrictedUnpickler(io.BytesIO(data), budget).load()
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError("pickle needs more memory than is available") from None
    except RecursionError:
        raise CheckpointError("pickle nesting too deep") from None
    except Exception as exc:  # the unpickler and the constructors fail on malformed input with many types
        raise CheckpointError(f"corrupt or truncated pickle ({type(exc).__name__}: {one_line(str(exc))})") from None
