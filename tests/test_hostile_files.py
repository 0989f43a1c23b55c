"""Hostile and careless input: latent files, preset files, images and numbers.

Every bad file or number ends in one ``Error:`` line (exit 1, or 2 for an option out of its
range), with no traceback, no hang and no output left behind. The files are crafted here: a
``.npy`` header that declares 10¹¹ elements, a PNG header that declares 81 megapixels,
truncated and corrupt archives, JSON nested 100,000 deep. A deterministic fuzz test mutates
valid latent and preset files (byte flips, truncation, junk splices) and feeds each to the
loader under a time limit.
"""
from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

import click
import numpy as np
import pytest
from PIL import Image

from insetgan.errors import InsetganError
from insetgan.images import ImageTooLargeError, open_rgb
from insetgan.latents import latent_shapes, read_latent, read_npy
from insetgan.method.config import MAX_STEPS, OptimConfig, load_config
from insetgan.train.data import load_dataset
from tests.cli_run import assert_one_line_error, run, run_subprocess
from tests.conftest import REPO
from tests.deadline import within

ASTRONAUT = REPO / "tests" / "data" / "astronaut.jpg"
NUM_WS, W_DIM = 6, 8  # the latent shape the in-process fuzz cases are read against


# ---------------------------------------------------------------------------- crafted files

def npy(arr: np.ndarray) -> bytes:
    """``.npy`` bytes of ``arr`` (object arrays written as pickles, as a hostile file would be)."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def npz(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    """``.npz`` bytes of ``arrays`` (stored, or deflated)."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A version-1.0 ``.npy`` header declaring ``shape`` and no data after it."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width``×``height`` 8-bit grey pixels but carries almost no data (a bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def corrupt_deflate(data: bytes) -> bytes:
    """A deflated ``.npz`` with bytes inside its compressed stream overwritten (zlib fails, headers intact)."""
    buf = bytearray(data)
    start = 30 + len("ws.npy") + 40  # local header, name, then well inside the compressed data
    buf[start:start + 12] = b"\xff" * 12
    return bytes(buf)


def latent(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


BAD_LATENTS = {
    "empty.npy": (b"", "is empty"),
    "truncated.npz": (npz(ws=latent((NUM_WS, W_DIM)))[:150], "cannot read"),
    "deflate.npz": (corrupt_deflate(npz(True, ws=latent((64, W_DIM)))), "cannot read"),
    "object.npy": (npy(np.array([{"w": 1}], dtype=object)), "object"),
    "huge.npy": (npy_header((10**11,)), "has shape [100000000000]"),
    "short.npy": (npy_header((NUM_WS, W_DIM)) + b"\0" * 8, "truncated"),
    "nan.npy": (npy(np.full((NUM_WS, W_DIM), np.nan, np.float32)), "NaN"),
    "ints.npy": (npy(np.zeros((NUM_WS, W_DIM), np.int64)), "int64"),
    "text.npy": (b"0.1 0.2 0.3\n", "not a .npy or .npz"),
}


@pytest.mark.parametrize("name", sorted(BAD_LATENTS))
def test_bad_latent_files_are_one_line_errors(name, tmp_path):
    data, message = BAD_LATENTS[name]
    (tmp_path / name).write_bytes(data)
    with within(10), pytest.raises(InsetganError) as err:
        read_latent(tmp_path / name, NUM_WS, W_DIM)
    assert message in str(err.value) and "\n" not in str(err.value)


class ReadRecorder(io.BytesIO):
    """An in-memory file that records the size of every read asked of it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.asked.append(-1 if size is None else size)
        return super().read(size)


def test_latent_header_is_checked_before_any_data_is_read():
    # 10^11 float64 values (800 GB) declared, followed by a megabyte of "data" that must not be asked for.
    allowed, want = latent_shapes(NUM_WS, W_DIM)
    fp = ReadRecorder(npy_header((10**11,), "<f8") + b"\0" * (1 << 20))
    with pytest.raises(InsetganError, match="has shape"):
        read_npy(fp, "latent", allowed, want)
    assert fp.asked and all(0 <= n <= 128 for n in fp.asked)  # magic, header length, header: never the data
    fp = ReadRecorder(npy_header((NUM_WS, W_DIM)) + latent((NUM_WS, W_DIM)).tobytes())
    assert read_npy(fp, "latent", allowed, want).shape == (NUM_WS, W_DIM)
    assert max(fp.asked) == NUM_WS * W_DIM * 4  # exactly the declared bytes


def test_good_latent_files_load_with_their_values(tmp_path):
    w, wplus, batch = latent((W_DIM,)), latent((NUM_WS, W_DIM), 1), latent((3, NUM_WS, W_DIM), 2)
    (tmp_path / "w.npy").write_bytes(npy(w.astype(np.float64)))
    (tmp_path / "run.npz").write_bytes(npz(ws=batch, noise_00=latent((1, 1, 4, 4))))
    (tmp_path / "face.npz").write_bytes(npz(True, canvas=wplus, face=batch[:1]))
    assert np.array_equal(read_latent(tmp_path / "w.npy", NUM_WS, W_DIM), np.broadcast_to(w, (1, NUM_WS, W_DIM)))
    assert np.array_equal(read_latent(tmp_path / "run.npz", NUM_WS, W_DIM, "canvas"), batch)
    assert np.array_equal(read_latent(tmp_path / "face.npz", NUM_WS, W_DIM, "face"), batch[:1])
    with pytest.raises(InsetganError, match="has no array 'shoes'"):
        read_latent(tmp_path / "face.npz", NUM_WS, W_DIM, "shoes")
    # The official projector's projected_w.npz (key w) is read by every latent option, before other arrays.
    (tmp_path / "projected_w.npz").write_bytes(npz(w=wplus[None], extra=batch))
    assert np.array_equal(read_latent(tmp_path / "projected_w.npz", NUM_WS, W_DIM, "face"), wplus[None])


def test_compose_refuses_bad_latents_in_one_line(tmp_path):
    out = tmp_path / "out"
    for name in ("truncated.npz", "huge.npy", "object.npy"):
        (tmp_path / name).write_bytes(BAD_LATENTS[name][0])
        with within(60):
            res = run("compose", "--face-latent", tmp_path / name, "--steps", 1, "--outdir", out)
        assert res.returncode == 1
        assert_one_line_error(res, "latent")
    assert not out.exists()


def test_an_empty_latent_file_is_an_error_not_an_abort(tmp_path):
    # An empty file once ended in EOFError, which click reports as "Aborted." with exit 130.
    (tmp_path / "w.npy").write_bytes(b"")
    res = run_subprocess("compose", "--body-latent", tmp_path / "w.npy", "--outdir", tmp_path / "out", timeout=120)
    assert res.returncode == 1 and "Aborted" not in res.stderr
    assert_one_line_error(res, "is empty")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- preset files

BAD_PRESETS = {
    "deep.json": ("[" * 100_000 + "]" * 100_000, "nests 100000 levels"),
    "nan.json": ('{"lr_canvas": NaN}', "NaN is not a number"),
    "infinity.json": ('{"inset_weights": {"border": Infinity}}', "Infinity is not a number"),
    "overflow.json": ('{"lr_inset": 1e400}', "lr_inset must be a number in (0, 10], got inf"),
    "string.json": ('{"reg_mean_canvas": "0.1"}', "reg_mean_canvas must be a number"),
    "bool.json": ('{"border_px": true}', "border_px must be an integer"),
    "coarse.json": ('{"coarse_size": 100000}', "coarse_size must be an integer in [4, 1024]"),
    "steps.json": ('{"stages": [{"name": "a", "steps": 1000000000000}]}', "steps must be an integer in [0, 100000]"),
    "digits.json": ('{"border_px": ' + "9" * 5000 + "}", "invalid JSON"),
    "roles.json": ('{"stages": [{"name": "a", "steps": 3, "optimize": [["canvas"]]}]}', "optimize must list roles"),
    "nan.yaml": ("lr_canvas: .nan\n", "lr_canvas must be a number"),
}


@pytest.mark.parametrize("name", sorted(BAD_PRESETS))
def test_bad_preset_files_are_one_line_errors(name, tmp_path):
    text, message = BAD_PRESETS[name]
    (tmp_path / name).write_text(text)
    with within(10), pytest.raises(InsetganError) as err:
        load_config(str(tmp_path / name))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_binary_and_oversized_presets_are_refused(tmp_path):
    (tmp_path / "bin.json").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "big.json").write_text(" " * (2 << 20) + "{}")
    with pytest.raises(InsetganError, match="not UTF-8"):
        load_config(str(tmp_path / "bin.json"))
    with pytest.raises(InsetganError, match="larger than"):
        load_config(str(tmp_path / "big.json"))


def test_compose_refuses_bad_presets_in_one_line(tmp_path):
    out = tmp_path / "out"
    for name in ("deep.json", "nan.json", "coarse.json"):
        (tmp_path / name).write_text(BAD_PRESETS[name][0])
        with within(60):
            res = run("compose", "--preset", tmp_path / name, "--outdir", out)
        assert res.returncode == 1
        assert_one_line_error(res, "preset file")
    assert not out.exists()


def test_config_ranges_are_the_command_lines(tmp_path):
    # The same bound refuses --steps on the command line and a stage's steps in a file.
    (tmp_path / "long.json").write_text(json.dumps({"stages": [{"name": "a", "steps": MAX_STEPS + 1}]}))
    with pytest.raises(InsetganError, match=f"in \\[0, {MAX_STEPS}\\]"):
        load_config(str(tmp_path / "long.json"))
    res = run("compose", "--steps", MAX_STEPS + 1, "--outdir", tmp_path / "out")
    assert res.returncode == 2 and f"1<=x<={MAX_STEPS}" in res.stderr
    assert OptimConfig().with_steps(MAX_STEPS).steps == MAX_STEPS
    with pytest.raises(InsetganError, match="--steps"):
        OptimConfig().with_steps(MAX_STEPS + 1)


# ---------------------------------------------------------------------------- fuzzing

def mutations(data: bytes, seed: int, count: int) -> Iterator[tuple[str, bytes]]:
    """``count`` deterministic damaged copies of ``data``: byte flips (half in the first 128 bytes), truncation, splices."""
    rng = np.random.RandomState(seed)
    for i in range(count):
        buf = bytearray(data)
        kind = ("flip", "truncate", "splice")[i % 3]
        if kind == "flip":
            span = min(len(buf), 128) if i % 2 else len(buf)
            for pos in rng.randint(0, span, rng.randint(1, 9)):
                buf[pos] ^= 1 << rng.randint(8)
        elif kind == "truncate":
            del buf[rng.randint(0, len(buf)):]
        else:
            pos, junk = rng.randint(0, len(buf) + 1), rng.bytes(rng.randint(1, 65))
            buf[pos:pos + rng.randint(0, 9)] = junk
        yield f"{kind}-{i}", bytes(buf)


def _fuzz(tmp_path: Path, base: bytes, suffix: str, seed: int, count: int, load) -> int:
    """Feed each mutation to ``load``; returns how many were refused. Anything but success or one line fails."""
    refused = 0
    for name, data in mutations(base, seed, count):
        path = tmp_path / f"case{suffix}"
        path.write_bytes(data)
        try:
            with within(5):
                load(path)
        except InsetganError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 400, (name, str(exc))
            refused += 1
        assert [p.name for p in tmp_path.iterdir()] == [path.name], name  # nothing written beside the input
        path.unlink()
    return refused


def test_fuzzed_latent_files(tmp_path):
    def load(path: Path) -> None:
        arr = read_latent(path, NUM_WS, W_DIM, "ws")
        assert arr.dtype == np.float32 and arr.shape[1:] == (NUM_WS, W_DIM) and np.isfinite(arr).all()

    bases = [(npy(latent((NUM_WS, W_DIM))), ".npy"), (npz(ws=latent((2, NUM_WS, W_DIM)), noise=latent((4, 4))), ".npz"),
             (npz(True, ws=latent((NUM_WS, W_DIM))), ".npz")]
    refused = sum(_fuzz(tmp_path, base, suffix, seed, 150, load) for seed, (base, suffix) in enumerate(bases))
    assert refused > 150  # most damage is noticed (the rest flips data bytes of a plain .npy into other floats)


def test_fuzzed_preset_files(tmp_path):
    preset = {"preset": "paper", "name": "mine", "lr_canvas": 0.02, "coarse_size": 32, "feather": 0.2,
              "inset_weights": {"border": 5.0, "face_l1": 1.0}, "track": {"damping": 0.25},
              "stages": [{"name": "a", "steps": 10, "optimize": ["insets"]},
                         {"name": "b", "steps": 20, "schedule": "alternating", "switch_every": 5}]}
    text = json.dumps(preset, indent=1).encode()
    (tmp_path / "ok.json").write_bytes(text)
    assert load_config(str(tmp_path / "ok.json")).stages[1].switch_every == 5
    (tmp_path / "ok.json").unlink()
    refused = _fuzz(tmp_path, text, ".json", 7, 240, lambda p: load_config(str(p)))
    yaml_text = "preset: default\ncoarse_size: 32\nstages:\n  - {name: a, steps: 7, switch_every: 3}\n".encode()
    refused += _fuzz(tmp_path, yaml_text, ".yaml", 8, 90, lambda p: load_config(str(p)))
    assert refused > 150


# ---------------------------------------------------------------------------- images

def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.random.RandomState(0).randint(0, 65536, (24, 32)).astype(np.uint16)
    values[0, :6] = [0, 128, 129, 257, 32896, 65535]
    Image.fromarray(values).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I;16")
    rgb = np.asarray(open_rgb(tmp_path / "grey16.png"))
    expected = np.round(values / 257).astype(np.uint8)
    assert rgb.shape == (24, 32, 3) and all(np.array_equal(rgb[..., c], expected) for c in range(3))
    assert list(rgb[0, :6, 0]) == [0, 0, 1, 1, 128, 255]
    floats = np.linspace(0, 1, 24 * 32, dtype=np.float32).reshape(24, 32)
    Image.fromarray(floats, "F").save(tmp_path / "float.tif")
    assert np.array_equal(np.asarray(open_rgb(tmp_path / "float.tif"))[..., 1], np.round(floats * 255).astype(np.uint8))
    Image.new("LA", (20, 20), (10, 0)).save(tmp_path / "clear.png")  # fully transparent: white
    assert (np.asarray(open_rgb(tmp_path / "clear.png")) == 255).all()


def test_a_sixteen_bit_selfie_aligns_like_its_8_bit_copy(tmp_path):
    grey = np.asarray(Image.open(ASTRONAUT).convert("L"))
    Image.fromarray(grey).save(tmp_path / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    for name in ("grey8", "grey16"):
        res = run("--quiet", "align", tmp_path / f"{name}.png", "--size", 64, "--out", tmp_path / f"{name}-out.png")
        assert res.returncode == 0, res.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "grey16-out.png")),
                          np.asarray(Image.open(tmp_path / "grey8-out.png")))


def _photos(folder: Path, n: int = 2) -> Path:
    folder.mkdir()
    rng = np.random.RandomState(0)
    for i in range(n):
        Image.fromarray(rng.randint(0, 255, (64, 32, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return folder


@pytest.mark.parametrize("kind", ["bodies", "shoes"])
def test_a_bomb_label_map_stops_prepare_with_nothing_written(kind, tmp_path):
    photos, labels = _photos(tmp_path / "photos"), tmp_path / "labels"
    labels.mkdir()
    Image.fromarray(np.zeros((64, 32), np.uint8)).save(labels / "0000.png")
    (labels / "0001.png").write_bytes(png_header(9000, 9000))  # 81 MP declared in 80 bytes
    size = ["--height", 32, "--width", 16] if kind == "bodies" else ["--size", 16]
    out = tmp_path / "out"
    with within(60):
        res = run("--quiet", "prepare", kind, photos, "--labels", labels, *size, "--progress", "off", "--out", out)
    assert res.returncode == 1
    assert_one_line_error(res, "label map")
    assert "too large (9000x9000" in res.stderr and not out.exists()
    # An earlier dataset in the folder stays as it was.
    out.mkdir()
    (out / "00000.png").write_bytes(b"earlier")
    run("--quiet", "prepare", kind, photos, "--labels", labels, *size, "--progress", "off", "--out", out)
    assert [p.name for p in out.iterdir()] == ["00000.png"] and (out / "00000.png").read_bytes() == b"earlier"


def test_train_refuses_bomb_and_broken_datasets_in_one_line(tmp_path):
    data = _photos(tmp_path / "data")
    (data / "zz.png").write_bytes(png_header(9000, 9000))
    out = tmp_path / "run"
    with within(60):
        res = run("train", "--data", data, "--outdir", out)
    assert res.returncode == 1
    assert_one_line_error(res, "zz.png is too large")
    assert not out.exists()
    with pytest.raises(ImageTooLargeError):
        load_dataset(data)
    (data / "zz.png").write_bytes(png_header(32, 64)[:40])  # right size, cut-off data: one line, no traceback
    with pytest.raises(InsetganError, match="cannot read dataset image zz.png"):
        load_dataset(data)
    (data / "zz.png").unlink()
    for text, message in [('{"kind": NaN}', "NaN"), ("[" * 50_000, "nests"), ("[]", "mapping")]:
        (data / "dataset.json").write_text(text)
        with pytest.raises(InsetganError, match=message):
            load_dataset(data)
    (data / "dataset.json").unlink()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(data.iterdir()):
            zf.write(p, p.name)
    (tmp_path / "data.zip").write_bytes(archive.getvalue()[:-60])  # the central directory is cut off
    with pytest.raises(InsetganError, match="cannot read dataset archive"):
        load_dataset(tmp_path / "data.zip")


# ---------------------------------------------------------------------------- numbers

def _numeric_options() -> Iterator[tuple[str, click.Parameter]]:
    from insetgan.cli import cli

    def walk(cmd: click.Command, path: str) -> Iterator[tuple[str, click.Parameter]]:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, f"{path} {name}".strip())
            return
        for param in cmd.params:
            if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                yield path, param

    return walk(cli, "")


def test_every_numeric_option_has_a_range():
    options = list(_numeric_options())
    assert len(options) > 40
    unbounded = [f"{cmd} --{p.name}" for cmd, p in options
                 if getattr(p.type, "min", None) is None or getattr(p.type, "max", None) is None]
    assert unbounded == []


USAGE, USER = 2, 1  # exit codes: an option out of its range; a value refused by the command


@pytest.mark.parametrize("args, message, code", [
    (["generate", "--network", "default-face", "--seeds", "0", "--trunc", "1e300"], "--trunc", USAGE),
    (["compose", "--trunc", "11"], "--trunc", USAGE),
    (["compose", "--steps", "1000000000000"], "--steps", USAGE),
    (["compose", "--body-seed", str(2**32)], "--body-seed", USAGE),
    (["compose", "--identity-weight", "1e300"], "--identity-weight", USAGE),
    (["refine-face", "x.png", "--face-seed", "-1"], "--face-seed", USAGE),
    (["invert", "x.png", "--network", "default-face", "--seed", str(2**32)], "--seed", USAGE),
    (["prepare", "faces", "x", "--size", "100000"], "--size", USAGE),
    (["prepare", "shoes", "x", "--labels", "y", "--pad", "1e9"], "--pad", USAGE),
    (["train", "--data", "x", "--z-dim", str(2**34)], "--z-dim", USAGE),
    (["train", "--data", "x", "--kimg", "1e300"], "--kimg", USAGE),
    (["generate", "--network", "default-face", "--seeds", "0", "--rotate", "1e9"], "--rotate", USAGE),
    (["sample-bodies", "--num", "3", "--body-seeds", "0-1"], "--num 3 but --body-seeds lists 2 seeds", USER),
    (["sample-bodies", "--body-seeds", "0-300"], "more than 256 values", USER),
    (["generate", "--network", "default-face", "--seeds", "0-5000"], "more than 1024 values", USER),
    (["generate", "--network", "default-face", "--seeds", "0", "--translate", "1e300,0"], "--translate", USER),
    (["compose", "--face-box", "0,0,10,10,1e300"], "box angle must be in [-360, 360]", USER),
    (["compose", "--pti-steps", "5"], "--pti-steps needs --pti", USER),
    (["invert", "x.png", "--network", "default-face", "--pti-steps", "5"], "--pti-steps needs --mode pti", USER),
    (["prepare", "bodies", "x", "--height", "48", "--width", "24"], "power of two", USER),
    (["prepare", "bodies", "x", "--height", "64", "--width", "16"], "--width must be --height or half", USER),
])
def test_absurd_or_conflicting_numbers_are_one_line_errors(args, message, code, tmp_path):
    option = "--out" if args[0] == "prepare" else "--outdir"
    res = run(*args, option, tmp_path / "out")
    assert res.returncode == code
    assert_one_line_error(res, message)
    assert not (tmp_path / "out").exists()
