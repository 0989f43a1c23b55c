"""A restricted unpickler for NVIDIA-format StyleGAN pickles that never runs embedded code.

Official snapshots store every network as ``_reconstruct_persistent_obj(meta)`` where ``meta``
carries the defining module's source text. The official loader executes that source; here
the call is mapped to :class:`PersistentRecord`, which only keeps the class name and the
pickled ``__dict__``. Every other global must be on a short allow-list (tensor and storage
rebuilders, ``OrderedDict``, ``EasyDict``, numpy scalars and dtypes); anything else raises
:class:`UnsafePickleError` naming the global, before it could be imported or called.
"""
from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from insetgan.networks.errors import CheckpointError, UnsafePickleError


@dataclass(frozen=True)
class PersistentRecord:
    """What an official persistent object becomes: its class name and pickled state."""

    class_name: str
    version: int
    state: dict

    def init_kwargs(self) -> dict:
        """The recorded constructor keyword arguments, as plain nested dicts."""
        return _plain(self.state.get("_init_kwargs") or {})

    def init_args(self) -> tuple:
        """The recorded positional constructor arguments."""
        return tuple(_plain(a) for a in (self.state.get("_init_args") or ()))

    def children(self) -> dict[str, "PersistentRecord"]:
        """Sub-modules recorded in ``_modules`` (None entries skipped)."""
        return {k: v for k, v in dict(self.state.get("_modules") or {}).items() if v is not None}

    def state_dict(self, prefix: str = "") -> "collections.OrderedDict[str, torch.Tensor]":
        """Flatten parameters and persistent buffers of this module tree, like ``nn.Module.state_dict``."""
        out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, tensor in dict(self.state.get(group) or {}).items():
                if tensor is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(tensor, torch.Tensor):
                    raise CheckpointError(f"{prefix}{name} is a {type(tensor).__name__}, not a tensor")
                out[prefix + name] = tensor
        for name, child in self.children().items():
            if not isinstance(child, PersistentRecord):
                raise CheckpointError(f"sub-module {prefix}{name} is not a recorded network object")
            out.update(child.state_dict(prefix + name + "."))
        return out

    def walk(self, path: str = ""):
        """Yield ``(path, record)`` for this record and every nested one."""
        yield path, self
        for name, child in self.children().items():
            if isinstance(child, PersistentRecord):
                yield from child.walk(f"{path}.{name}" if path else name)


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (attribute access is not needed)."""


def _plain(value: Any) -> Any:
    """Convert EasyDicts/OrderedDicts/numpy scalars recursively to plain Python values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _record_persistent(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise CheckpointError("malformed persistent object in pickle (expected a recorded class instance)")
    # meta['module_src'] is deliberately ignored: it is never compiled or executed.
    return PersistentRecord(str(meta.get("class_name")), int(meta.get("version", 0)), meta["state"])


def _load_storage(data: bytes) -> Any:
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError("tensor storage is not a byte string")
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError with details
        raise UnsafePickleError(f"a tensor storage blob was refused by torch's weights-only loader: {exc}") from None


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


def _numpy_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafePickleError("numpy object dtype in pickle refused")
    return dtype


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("numpy scalar with unsupported payload refused")
    return np.frombuffer(bytes(data), dtype=dtype)[0]


def _numpy_reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    if cls is not np.ndarray:
        raise UnsafePickleError("numpy array reconstruction of a non-ndarray class refused")
    return np.ndarray.__new__(np.ndarray, shape, typecode)


def _safe_set(items: Any = ()) -> set:
    items = list(items)
    if not all(isinstance(i, (str, int)) for i in items):
        raise UnsafePickleError("set of non-string items refused")
    return set(items)


_NUMPY = {
    "scalar": _numpy_scalar,
    "_reconstruct": _numpy_reconstruct,
}

ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _record_persistent,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,
    # Pickle protocols <= 3 (the released 2020/21 checkpoints) write a module's empty
    # ``_non_persistent_buffers_set`` as builtins.set([]); the stand-in accepts only names.
    ("builtins", "set"): _safe_set,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    for _name, _fn in _NUMPY.items():
        ALLOWED[(_mod, _name)] = _fn


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only resolves allow-listed globals."""

    def find_class(self, module: str, name: str) -> Any:
        """Return the safe stand-in for ``module.name`` or refuse it."""
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


def safe_load_pickle(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; format errors become ``CheckpointError``."""
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise CheckpointError(f"corrupt or truncated pickle ({type(exc).__name__}: {exc})") from None
    except RecursionError:
        raise CheckpointError("pickle nesting too deep") from None
