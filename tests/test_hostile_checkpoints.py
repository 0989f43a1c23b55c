"""Hostile checkpoint and weight files: bounded work, one-line errors, no traceback, in every format.

Each crafted file is built here. The command-line cases run in one subprocess (a hang fails the
batch by name, a runaway allocation hits its memory cap); the fuzz cases call the loader in this
process, each under a time limit.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import pickle
import pickletools
import random
import re
import struct
import time
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import save as save_safetensors

from insetgan.errors import InsetganError
from insetgan.networks import native
from insetgan.networks.checkpoints import load_checkpoint
from insetgan.networks.config import GeneratorConfig
from insetgan.networks.errors import CheckpointError, UnsafePickleError
from insetgan.networks.generator import Generator
from insetgan.networks.pickle_scan import PickleLimits
from insetgan.networks.safe_pickle import safe_load_pickle
from insetgan.networks.stylegan3_config import StyleGAN3Config
from insetgan.networks.torch_files import load_torch_file
from tests.cli_run import CliResult, assert_one_line_error, run, run_many_subprocess, run_subprocess
from tests.conftest import fixture_path
from tests.deadline import Hang, within
from tests.pickles import (Reduce, module_chain_pickle, nvidia_pickle_bytes, official_init_kwargs, op_global, op_int,
                           op_put, op_str, persistent_record, tuple_tree_pickle)

SMALL = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=8, mapping_layers=2)
MEMORY_LIMIT = 4 * 2**30  # the batch's address space: far below what an unbounded loader would take
CASE_SECONDS = 20.0  # per command on a loaded 2-core machine; the unbounded loaders never finished


# Crafted files --------------------------------------------------------------------------------
def _small_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(SMALL).eval()


def _pickle_with_kwarg(value: object) -> bytes:
    """An official-layout snapshot of a small generator whose synthesis kwargs hold ``value``."""
    G = _small_generator()
    kwargs = official_init_kwargs(G)
    kwargs["synthesis_kwargs"] = {**kwargs["synthesis_kwargs"], "junk": value}
    return nvidia_pickle_bytes(G, init_kwargs=kwargs)


def _list_tree(depth: int) -> list:
    """``l = [l, l]`` ``depth`` times: 2**depth paths through ``depth + 1`` lists."""
    node: list = []
    for _ in range(depth):
        node = [node, node]
    return node


def _cycle() -> list:
    node: list = []
    node.append(node)
    return node


def _legacy_storage_blob(replace: tuple[bytes, bytes] | None = None) -> bytes:
    """The legacy torch.save bytes of a 4-float storage, the way official pickles embed storages."""
    buf = io.BytesIO()
    with warnings.catch_warnings():  # typed storages are deprecated, and what official pickles hold
        warnings.simplefilter("ignore")
        torch.save(torch.zeros(4).storage(), buf, _use_new_zipfile_serialization=False)
    blob = buf.getvalue()
    return blob.replace(*replace) if replace else blob


def _snapshot_of(push: bytes) -> bytes:
    """A protocol-2 pickle ``{"G_ema": <push>}``."""
    return b"\x80\x02}X\x05\x00\x00\x00G_ema" + push + b"s."


def _storage_from(blob: bytes) -> bytes:
    """Opcodes that push ``torch.storage._load_from_bytes(blob)``, as official pickles store tensors."""
    return op_global("torch.storage", "_load_from_bytes") + b"B" + struct.pack("<I", len(blob)) + blob + b"\x85R"


def _evil_blob() -> bytes:
    """A legacy storage stream whose storage type is replaced by ``posix.system``."""
    return _legacy_storage_blob((b"torch\nFloatStorage", b"posix\nsystem"))


def _numpy_array(length: int) -> bytes:
    """Opcodes that push ``numpy.core.multiarray._reconstruct(ndarray, (length,), "b")``, as numpy pickles start."""
    shape = b"\x8a\x08" + length.to_bytes(8, "little") + b"\x85"
    return op_global("numpy.core.multiarray", "_reconstruct") + op_global("numpy", "ndarray") + shape \
        + b"U\x01b\x87R"


def _safetensors(config: dict | str | None = None, meta: dict | None = None, nan_tensor: bool = False) -> bytes:
    """Our safetensors format for the small generator, with its config or metadata replaced."""
    G = _small_generator()
    tensors = {k: v.detach().clone().contiguous() for k, v in G.state_dict().items()}
    if nan_tensor:
        tensors["mapping.fc0.weight"][0, 0] = math.nan
    cfg = config if isinstance(config, str) else json.dumps({**SMALL.to_dict(), **(config or {})})
    metadata = {"format": native.FORMAT_NAME, "format_version": "1", "architecture": "stylegan2", "config": cfg}
    return save_safetensors(tensors, metadata={**metadata, **(meta or {})})


def _torch_zip(members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _torch_saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _recompressed(data: bytes) -> bytes:
    """A torch zip with every member deflated (torch.save stores them uncompressed)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    return _torch_zip(members, zipfile.ZIP_DEFLATED)


def _rosinality_huge_style() -> bytes:
    """A rosinality state dict whose style layer is a stride-0 view: 2**34 rows from one stored float."""
    sd = {"style.1.weight": torch.zeros(1, 1).expand(2**34, 8), "input.input": torch.zeros(1, 8, 4, 4),
          "to_rgb1.conv.weight": torch.zeros(1, 3, 8, 1, 1)}
    return _torch_saved({"g_ema": sd, "latent_avg": torch.zeros(8)})


# name -> (builder of the file's bytes, a fragment of the expected one-line error)
CHECKPOINTS: dict[str, tuple[Callable[[], bytes], str]] = {
    "kwargs_list_tree": (lambda: _pickle_with_kwarg(_list_tree(60)), "expands to more than"),
    "kwargs_cycle": (lambda: _pickle_with_kwarg(_cycle()), "contains itself"),
    "shared_submodules": (lambda: module_chain_pickle(60, shared=True), "shared or cyclic"),
    "deep_submodules": (lambda: module_chain_pickle(5000), "nest more than 64 levels"),
    "binunicode8_2e63": (lambda: b"\x80\x04\x8d" + struct.pack("<Q", 2**63) + b"abc.", "corrupt or truncated"),
    "binbytes8_2e40": (lambda: b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc.", "corrupt or truncated"),
    "memo_index_2e32": (lambda: b"\x80\x02]" + op_put(2**32 - 1) + b".", "memo index"),
    "tuple_tree_key": (lambda: tuple_tree_pickle(60), "tuple of more than"),
    "deep_tuples": (lambda: b"\x80\x02)" + b"\x85" * 100_000 + b".", "nests tuples"),
    "huge_integer": (lambda: b"\x80\x02\x8b" + struct.pack("<i", 2**20) + b"\x01" * 2**20 + b".", "bit integer"),
    "numpy_array_2e40": (lambda: _snapshot_of(_numpy_array(2**40)), "bytes (limit)"),
    "evil_storage_blob": (lambda: _snapshot_of(_storage_from(_evil_blob())), "weights-only"),
    "truncated_pickle": (lambda: fixture_path("sg2ada_face64.pkl").read_bytes()[:50_000], "corrupt or truncated"),
    "safetensors_version_1.5": (lambda: _safetensors(meta={"format_version": "1.5"}), "format_version"),
    "safetensors_z_dim_2e34": (lambda: _safetensors({"z_dim": 2**34}), "z_dim must be an integer in [0, 8192]"),
    "safetensors_nan_lr": (lambda: _safetensors({"mapping_lr_multiplier": math.nan}), "mapping_lr_multiplier"),
    "safetensors_inf_clamp": (lambda: _safetensors({"conv_clamp": math.inf}), "conv_clamp"),
    "safetensors_string_dim": (lambda: _safetensors({"w_dim": "8"}), "w_dim"),
    "safetensors_deep_json": (lambda: _safetensors("[" * 30_000 + "]" * 30_000), "nests too deeply"),
    "safetensors_list_config": (lambda: _safetensors("[1, 2]"), "mapping of field names"),
    "safetensors_nan_weight": (lambda: _safetensors(nan_tensor=True), "NaN or infinite"),
    "torch_zip_deflated": (lambda: _recompressed(_torch_saved({"g_ema": {}})), "compressed"),
    "torch_zip_tuple_tree": (lambda: _torch_zip({"archive/data.pkl": tuple_tree_pickle(60),
                                                 "archive/byteorder": b"little", "archive/version": b"3\n"}),
                             "tuple of more than"),
    "rosinality_z_dim_2e34": (_rosinality_huge_style, "z_dim must be an integer in [0, 8192]"),
    "rosinality_flat_input": (lambda: _torch_saved({"g_ema": {"style.1.weight": torch.zeros(8, 8),
                                                              "input.input": torch.zeros(8)}}), "fewer dimensions"),
}
# Also through ``generate --network`` (the cases that hung or allocated without bound).
GENERATE = ("kwargs_list_tree", "shared_submodules", "deep_submodules", "binunicode8_2e63", "memo_index_2e32",
            "tuple_tree_key", "safetensors_z_dim_2e34", "safetensors_nan_lr", "rosinality_z_dim_2e34")
# LPIPS backbone files given to ``--weights``.
WEIGHTS: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "file is empty"),
    "pickle_payload": (lambda: pickle.dumps(Reduce(os.system, "echo pwned")), "not a torch.save file"),
    "random_bytes": (lambda: random.Random(0).randbytes(4096), "not a torch.save file"),
    "torch_save_payload": (lambda: _torch_saved({"x": Reduce(os.system, "echo pwned")}), "weights-only"),
    "torch_zip_tuple_tree": (CHECKPOINTS["torch_zip_tuple_tree"][0], "tuple of more than"),
    "wrong_state_dict": (lambda: _torch_saved({"features.0.weight": torch.zeros(2, 2)}), "not a torchvision vgg"),
}


@pytest.fixture(scope="module")
def crafted(tmp_path_factory) -> dict[str, Path]:
    """Every crafted checkpoint, LPIPS backbone and the small network the --weights runs use."""
    folder = tmp_path_factory.mktemp("hostile")
    paths = {}
    for group, cases in (("ckpt", CHECKPOINTS), ("weights", WEIGHTS)):
        for name, (build, _) in cases.items():
            paths[f"{group}:{name}"] = folder / f"{group}-{name}.bin"
            paths[f"{group}:{name}"].write_bytes(build())
    native.save(_small_generator(), folder / "small.safetensors")
    paths["small"] = folder / "small.safetensors"
    Image = pytest.importorskip("PIL.Image")
    Image.new("RGB", (8, 8), (128, 90, 60)).save(folder / "photo.png")
    paths["photo"] = folder / "photo.png"
    paths["out"] = folder / "out"
    return paths


def _runs(crafted: dict[str, Path]) -> dict[str, list[object]]:
    runs: dict[str, list[object]] = {f"inspect:{name}": ["inspect", crafted[f"ckpt:{name}"]] for name in CHECKPOINTS}
    for name in GENERATE:
        runs[f"generate:{name}"] = ["generate", "--network", crafted[f"ckpt:{name}"], "--seeds", "0",
                                    "--device", "cpu", "--outdir", crafted["out"] / f"gen-{name}"]
    for name in WEIGHTS:
        runs[f"weights:{name}"] = ["invert", crafted["photo"], "--network", crafted["small"], "--perceptual",
                                   "lpips-vgg", "--weights", crafted[f"weights:{name}"], "--device", "cpu",
                                   "--outdir", crafted["out"] / f"inv-{name}"]
    return runs


@pytest.fixture(scope="module")
def cli_results(crafted) -> dict[str, tuple[CliResult, float]]:
    """Every command-line case, run in one subprocess with a memory cap and an overall time limit."""
    runs = _runs(crafted)
    results = run_many_subprocess(list(runs.values()), timeout=CASE_SECONDS * len(runs) + 120,
                                  memory_limit=MEMORY_LIMIT)
    return dict(zip(runs, results))


def _assert_refused(result: CliResult, seconds: float, message: str, outdir: Path | None = None) -> None:
    assert result.returncode == 1, result.stderr
    assert_one_line_error(result, message)
    assert seconds < CASE_SECONDS
    if outdir is not None:
        assert not outdir.exists() or not any(outdir.iterdir())


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_inspect_refuses_hostile_checkpoint(cli_results, name):
    _assert_refused(*cli_results[f"inspect:{name}"], CHECKPOINTS[name][1])


@pytest.mark.parametrize("name", GENERATE)
def test_generate_refuses_hostile_checkpoint(cli_results, crafted, name):
    _assert_refused(*cli_results[f"generate:{name}"], CHECKPOINTS[name][1], crafted["out"] / f"gen-{name}")


@pytest.mark.parametrize("name", WEIGHTS)
def test_weights_option_refuses_hostile_backbone(cli_results, crafted, name):
    _assert_refused(*cli_results[f"weights:{name}"], WEIGHTS[name][1], crafted["out"] / f"inv-{name}")


def test_shared_submodules_refused_by_a_real_process(crafted):
    """The entry point itself: exit status 1, one line on stderr, promptly."""
    t0 = time.perf_counter()
    proc = run_subprocess("inspect", crafted["ckpt:shared_submodules"], timeout=120)
    assert proc.returncode == 1
    assert_one_line_error(proc, "shared or cyclic")
    assert time.perf_counter() - t0 < 120


# The unpickler's own limits, with small limits so the cases stay small ---------------------------
def test_opcode_and_byte_limits():
    many_ops = b"\x80\x02" + b"N0" * 600 + b"N."  # 1,202 opcodes
    with pytest.raises(CheckpointError, match="more than 1,000 unpickling steps"):
        safe_load_pickle(many_ops, PickleLimits(max_ops=1000))
    assert safe_load_pickle(many_ops, PickleLimits(max_ops=2000)) is None
    big_string = b"\x80\x02X" + struct.pack("<I", 5000) + b"a" * 5000 + b"."
    with pytest.raises(CheckpointError, match="4,096 bytes"):
        safe_load_pickle(big_string, PickleLimits(max_bytes=4096))


def test_shared_kwargs_stay_shared_and_small():
    """Sharing that does not blow up (the same small list twice) is accepted; the converted value keeps it."""
    G = _small_generator()
    shared = [1.0, 3.0, 3.0, 1.0]
    kwargs = official_init_kwargs(G)
    kwargs["synthesis_kwargs"] = {**kwargs["synthesis_kwargs"], "resample_filter": shared}
    kwargs["mapping_kwargs"] = {**kwargs["mapping_kwargs"], "junk": shared}
    rec = safe_load_pickle(nvidia_pickle_bytes(G, init_kwargs=kwargs))["G_ema"]
    plain = rec.init_kwargs()
    assert plain["synthesis_kwargs"]["resample_filter"] is plain["mapping_kwargs"]["junk"]
    assert GeneratorConfig.from_init_kwargs(plain) == SMALL


def test_recorded_network_modified_after_creation_is_refused():
    record = persistent_record("Generator", {})
    assert safe_load_pickle(_snapshot_of(record))["G_ema"].class_name == "Generator"
    replace_state = b"}" + op_str("state") + op_int(1) + b"sb"  # BUILD with {"state": 1}
    with pytest.raises(UnsafePickleError, match="BUILD"):
        safe_load_pickle(_snapshot_of(record + replace_state))


def test_storage_blobs_are_scanned_and_checked():
    with pytest.raises(UnsafePickleError, match="weights-only"):
        safe_load_pickle(_snapshot_of(_storage_from(_evil_blob())))
    bomb = _legacy_storage_blob()[:15] + tuple_tree_pickle(60)  # the magic number's pickle, then a tuple tree
    with pytest.raises(CheckpointError, match="tuple of more than"):
        safe_load_pickle(_snapshot_of(_storage_from(bomb)))
    with pytest.raises(UnsafePickleError, match="legacy torch.save stream"):
        safe_load_pickle(_snapshot_of(_storage_from(pickle.dumps([1, 2]))))


MAPPING_KWARGS = {"mapping_layers": "num_layers", "mapping_lr_multiplier": "lr_multiplier",
                  "mapping_activation": "activation", "embed_features": "embed_features",
                  "layer_features": "layer_features", "w_avg_beta": "w_avg_beta"}


@pytest.mark.parametrize("changes, message", [
    ({"z_dim": 2**34}, "z_dim must be an integer in [0, 8192]"),
    ({"mapping_lr_multiplier": math.nan}, "mapping_lr_multiplier must be a finite number"),
    ({"w_avg_beta": 1.5}, "w_avg_beta"),
    ({"img_resolution": 2**20}, "power of two in [4, 4096]"),
    ({"square": "no"}, "square must be true or false"),
    ({"resample_filter": [1.0, math.inf]}, "resample_filter"),
    ({"resample_filter": [1.0, -1.0]}, "sum to zero"),
    ({"channel_max": 4096, "channel_base": 2**22, "img_resolution": 4096}, "parameters; the limit"),
])
def test_generator_config_ranges(changes, message):
    """One table of ranges, the same for our safetensors (from_dict) and official pickles (init kwargs)."""
    values = {**SMALL.to_dict(), **changes}
    with pytest.raises(InsetganError, match=re.escape(message)):
        GeneratorConfig.from_dict(values)
    mapping = {name: values.pop(field) for field, name in MAPPING_KWARGS.items()}
    top = {name: values.pop(name) for name in ("z_dim", "w_dim", "c_dim", "img_resolution", "img_channels")}
    with pytest.raises(InsetganError, match=re.escape(message)):
        GeneratorConfig.from_init_kwargs({**top, "mapping_kwargs": mapping, "synthesis_kwargs": values})


@pytest.mark.parametrize("changes, message", [
    ({"num_layers": 10**9}, "num_layers must be an integer in [1, 64]"),
    ({"first_stopband": 0.01}, "first_stopband"),
    ({"first_stopband": 1e4}, "transition band"),
    ({"filter_size": 64, "lrelu_upsampling": 16}, "-tap up-sampling filter"),
    ({"magnitude_ema_beta": math.nan}, "magnitude_ema_beta"),
    ({"use_radial_filters": 2}, "use_radial_filters"),
])
def test_stylegan3_config_ranges(changes, message):
    base = {"z_dim": 8, "w_dim": 8, "c_dim": 0, "img_resolution": 16, "img_channels": 3, "channel_base": 256,
            "channel_max": 16}
    with pytest.raises(InsetganError, match=re.escape(message)):
        StyleGAN3Config.from_dict({**base, **changes})
    with pytest.raises(CheckpointError, match=re.escape(message)):
        StyleGAN3Config.from_init_kwargs({**base, **changes})


# Deterministic fuzzing of every checkpoint format ------------------------------------------------
FUZZ_CASES = 20  # per format; each successful load builds a network, so this sets the test's time
FUZZ_CASE_SECONDS = 15


def _hot_positions(data: bytes) -> list[int]:
    """Where a format's structure lies: a pickle's opcodes, else the first 64 KiB and the last 4 KiB."""
    if data[:1] == b"\x80" and data[:3] != b"\x80\x02\x8a":
        try:
            return [pos for _, _, pos in pickletools.genops(data)]
        except ValueError:
            pass
    return list(range(min(len(data), 65_536))) + list(range(max(len(data) - 4096, 0), len(data)))


def _mutate(data: bytes, hot: list[int], rng: random.Random) -> tuple[str, bytes]:
    """One deterministic corruption: byte flips, a truncation, junk inserted or junk overwriting."""
    kind = rng.choice(["flip", "flip", "truncate", "insert", "overwrite"])
    out = bytearray(data)
    if kind == "truncate":
        cut = rng.randrange(len(data))
        return f"truncate@{cut}", bytes(out[:cut])
    pos = rng.choice(hot) if rng.random() < 0.8 else rng.randrange(len(data))
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            at = min(pos + rng.randrange(16), len(out) - 1)
            out[at] ^= rng.randrange(1, 256)
        return f"flip@{pos}", bytes(out)
    junk = rng.randbytes(rng.randint(1, 64))
    if kind == "insert":
        return f"insert{len(junk)}@{pos}", bytes(out[:pos] + junk + out[pos:])
    return f"overwrite{len(junk)}@{pos}", bytes(out[:pos] + junk + out[pos + len(junk):])


@pytest.fixture(scope="module")
def fuzz_sources(tmp_path_factory) -> dict[str, Path]:
    """One file of every format the loader reads: the official fixtures, the rosinality one re-saved in
    torch's legacy layout, and safetensors files written by ``insetgan convert`` (StyleGAN2 and 3)."""
    folder = tmp_path_factory.mktemp("fuzz-sources")
    sources = {name: fixture_path(name) for name in ("sg2ada_face64.pkl", "rosinality_face64.pt",
                                                     "sg3t_face64.pkl", "sghuman_body64x32.pkl")}
    sources["rosinality_legacy.pt"] = folder / "rosinality_legacy.pt"
    state = load_torch_file(sources["rosinality_face64.pt"], [argparse.Namespace])
    torch.save(state, sources["rosinality_legacy.pt"], _use_new_zipfile_serialization=False)
    for name, fixture in (("sg2.safetensors", "sg2ada_face64.pkl"), ("sg3.safetensors", "sg3t_face64.pkl")):
        sources[name] = folder / name
        proc = run("convert", sources[fixture], sources[name])
        assert proc.returncode == 0, proc.stderr
    return sources


@pytest.mark.parametrize("source", ["sg2ada_face64.pkl", "rosinality_face64.pt", "sg3t_face64.pkl",
                                    "sghuman_body64x32.pkl", "rosinality_legacy.pt", "sg2.safetensors",
                                    "sg3.safetensors"])
def test_fuzzed_checkpoints_fail_cleanly(source, fuzz_sources, tmp_path):
    """Corrupted files load or raise InsetganError, each within its time limit; nothing else escapes."""
    path = fuzz_sources[source]
    data = path.read_bytes()
    hot = _hot_positions(data)
    rng = random.Random(f"fuzz:{source}")
    target = tmp_path / f"fuzzed{path.suffix}"
    outcomes = []
    for case in range(FUZZ_CASES):
        label, mutated = _mutate(data, hot, rng)
        target.write_bytes(mutated)
        try:
            with within(FUZZ_CASE_SECONDS, f"{source} case {case} ({label})"):
                load_checkpoint(target)
            outcomes.append("loaded")
        except InsetganError as exc:
            assert "\n" not in str(exc), f"{source} case {case} ({label}): a multi-line message: {exc}"
            outcomes.append("refused")
        except Hang as exc:
            pytest.fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - anything else is the bug this test looks for
            pytest.fail(f"{source} case {case} ({label}): {type(exc).__name__}: {exc}")
    assert "refused" in outcomes  # the corruptions reach the checks
