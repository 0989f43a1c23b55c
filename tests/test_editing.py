"""Latent editing: the direction conventions against hand-applied edits, SeFa, boundaries, bad files, the strip job."""
from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from insetgan import outputs
from insetgan.editing import readers
from insetgan.editing.apply import apply_w_edits, style_edits, synthesize_edited
from insetgan.editing.boundary import BoundaryConfig, fit_boundary
from insetgan.editing.directions import directions_dir, load_edit, load_edits
from insetgan.editing.layers import generator_shape, style_affines
from insetgan.editing.samples import read_labels
from insetgan.editing.sefa import rayleigh, sefa
from insetgan.editing.spec import Edit, parse_edit
from insetgan.errors import InsetganError
from insetgan.models import models_dir
from insetgan.networks.checkpoints import load_checkpoint
from insetgan.sampling import z_from_seed
from tests.cli_run import assert_one_line_error, run, run_subprocess
from tests.conftest import fixture_path

TOL = 1e-4
BODY = "sghuman_body64x32.pkl"  # StyleGAN2, num_ws 10, w_dim 64


@pytest.fixture(scope="module")
def body():
    return load_checkpoint(fixture_path(BODY)).generator


def hand_ws(G, seed: int, psi: float = 1.0) -> torch.Tensor:
    with torch.no_grad():
        return G.mapping(z_from_seed(seed, G.z_dim), None, truncation_psi=psi)


def strip(tmp_path, *args: object) -> dict[int, list[np.ndarray]]:
    """Run ``insetgan edit --raw`` and return the raw images per seed (columns in order)."""
    out = tmp_path / "strip"
    res = run("edit", "--network", fixture_path(BODY), "--raw", "--outdir", out, *args)
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    return {s: [np.load(out / f"seed{s:04d}_{k}.npy") for k in range(len(report["strengths"]))]
            for s in report["seeds"]}


def test_w_edit_on_all_rows_and_a_row_range_matches_the_hand_edit(body, tmp_path):
    d = np.random.RandomState(1).randn(body.w_dim).astype(np.float32)
    np.save(tmp_path / "d.npy", d)
    for spec, rows in ((f"{tmp_path / 'd.npy'}=1.5", slice(None)), (f"{tmp_path / 'd.npy'}@4-7=1.5", slice(4, 8))):
        got = strip(tmp_path, "--seeds", "3", "--trunc", "0.7", "--edit", spec, "--strengths", "-2,0,1")
        for k, factor in enumerate((-2.0, 0.0, 1.0)):
            ws = hand_ws(body, 3, 0.7)
            ws[:, rows] += 1.5 * factor * torch.from_numpy(d)
            with torch.no_grad():
                want = body.synthesis(ws, noise_mode="const")[0].numpy()
            np.testing.assert_allclose(got[3][k], want, atol=TOL, rtol=0)
        (tmp_path / "strip").rename(tmp_path / f"done{rows.start}")


def test_per_row_directions_in_pt_and_pkl_files(body, tmp_path):
    rows = np.random.RandomState(2).randn(body.num_ws, body.w_dim).astype(np.float32)
    torch.save(torch.from_numpy(rows), tmp_path / "d.pt")
    (tmp_path / "d.pkl").write_bytes(pickle.dumps(rows[:1]))  # InterFaceGAN's [1, w_dim] as a pickled array
    shape = generator_shape(body)
    ws = hand_ws(body, 0)
    pt = load_edit(parse_edit(f"{tmp_path / 'd.pt'}@2-3=2"), shape)
    want = ws.clone()
    want[:, 2:4] += 2 * torch.from_numpy(rows[2:4])
    torch.testing.assert_close(apply_w_edits(ws, [pt]), want, atol=1e-6, rtol=0)
    pkl = load_edit(parse_edit(f"{tmp_path / 'd.pkl'}=-1"), shape)
    torch.testing.assert_close(apply_w_edits(ws, [pt, pkl]), want - torch.from_numpy(rows[0]), atol=1e-6, rtol=0)


def test_npz_name_pick_matches_the_hand_edit(body, tmp_path):
    rng = np.random.RandomState(3)
    a, b = rng.randn(body.w_dim).astype(np.float32), rng.randn(body.w_dim).astype(np.float32)
    np.savez(tmp_path / "dirs.npz", a=a, b=b, _eigenvalues=np.ones(2))
    got = strip(tmp_path, "--seeds", "1", "--edit", f"{tmp_path / 'dirs.npz'}:b=2", "--strengths", "1")
    ws = hand_ws(body, 1) + 2 * torch.from_numpy(b)
    with torch.no_grad():
        np.testing.assert_allclose(got[1][0], body.synthesis(ws, noise_mode="const")[0].numpy(), atol=TOL, rtol=0)
    res = run("edit", "--network", fixture_path(BODY), "--seeds", "1", "--edit", f"{tmp_path / 'dirs.npz'}=2",
              "--outdir", tmp_path / "x")
    assert_one_line_error(res, "pick one with FILE:NAME")


def hand_style_edit(G, layer: int, v: np.ndarray):
    """A copy of ``G`` whose layer's affine bias is shifted so that its styles gain ``v``."""
    H = copy.deepcopy(G)
    affine = style_affines(H)[layer]
    with torch.no_grad():
        affine.bias += torch.from_numpy(v) / affine.bias_gain
    return H


def test_style_edit_on_a_layer_matches_adding_to_its_styles_by_hand(body, tmp_path):
    layer = 3
    width = generator_shape(body).layers[layer].width
    v = np.random.RandomState(4).randn(width).astype(np.float32)
    np.savez(tmp_path / "ss.npz", **{f"s{layer}": v})
    got = strip(tmp_path, "--seeds", "2", "--edit", f"{tmp_path / 'ss.npz'}=0.5", "--strengths", "0,3")
    with torch.no_grad():
        plain = body.synthesis(hand_ws(body, 2), noise_mode="const")[0].numpy()
        edited = hand_style_edit(body, layer, 1.5 * v).synthesis(hand_ws(body, 2), noise_mode="const")[0].numpy()
    np.testing.assert_allclose(got[2][0], plain, atol=TOL, rtol=0)
    np.testing.assert_allclose(got[2][1], edited, atol=TOL, rtol=0)
    assert np.abs(edited - plain).max() > 1e-2
    # The hooks are gone afterwards: the generator draws as before.
    loaded = load_edit(parse_edit(f"{tmp_path / 'ss.npz'}=1"), generator_shape(body))
    with style_edits(body, [loaded]):
        pass
    with torch.no_grad():
        np.testing.assert_array_equal(body.synthesis(hand_ws(body, 2), noise_mode="const")[0].numpy(), plain)


def test_stylegan_human_folder_of_pickles_with_a_channel_mask(body, tmp_path):
    shape = generator_shape(body)
    rng = np.random.RandomState(5)
    folder = tmp_path / "upper_length"
    folder.mkdir()
    vecs = {i: rng.randn(1, layer.width).astype(np.float32) for i, layer in enumerate(shape.layers)}
    for i, v in vecs.items():
        (folder / f"style_vect_mean_{i}.pkl").write_bytes(pickle.dumps(v, protocol=3 + i % 2))
    scores = rng.randn(shape.layers[5].width)
    (folder / "statis_5.csv").write_text("channel,strength\n" + "".join(f"{c},{s}\n" for c, s in enumerate(scores)))
    full = load_edit(parse_edit(f"{folder}=1"), shape)
    assert all(np.array_equal(full.direction.layers[i], vecs[i][0]) for i in vecs)
    masked = load_edit(parse_edit(f"{folder}@5%0.5=2"), shape)
    assert [i for i, v in enumerate(masked.direction.layers) if v is not None] == [5]
    np.testing.assert_array_equal(masked.direction.layers[5], vecs[5][0] * (np.abs(scores) > 0.5))
    ws = hand_ws(body, 0)
    with torch.no_grad():
        got = synthesize_edited(body, ws, [masked])
        want = hand_style_edit(body, 5, 2 * masked.direction.layers[5]).synthesis(ws, noise_mode="const")
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)
    (folder / "style_vect_mean_2.pkl").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(InsetganError, match="not on the allow-list"):
        load_edit(parse_edit(f"{folder}=1"), shape)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo payload ran > /dev/null",))


def test_sefa_directions_are_orthonormal_and_stronger_than_random(body):
    res = sefa(body, (2, 7), num=8)
    np.testing.assert_allclose(res.directions @ res.directions.T, np.eye(8), atol=1e-8)
    assert (np.diff(res.eigenvalues) <= 1e-9).all()
    random = np.random.RandomState(6).randn(64, body.w_dim)
    np.testing.assert_allclose(rayleigh(body, (2, 7), res.directions), res.eigenvalues, rtol=1e-6)
    assert res.eigenvalues[0] > 1.5 * rayleigh(body, (2, 7), random).mean()

    def change(d: np.ndarray) -> float:
        total = 0.0
        for seed in range(3):
            ws = hand_ws(body, seed)
            step = ws.clone()
            step[:, 2:8] += torch.from_numpy(d).float()
            with torch.no_grad():
                total += float((body.synthesis(step) - body.synthesis(ws)).abs().mean())
        return total

    unit = random / np.linalg.norm(random, axis=1, keepdims=True)
    assert np.mean([change(d) for d in res.directions[:3]]) > np.mean([change(d) for d in unit[:6]])


def test_sefa_command_writes_named_directions(tmp_path):
    out = tmp_path / "dirs.npz"
    res = run("directions", "sefa", "--network", fixture_path(BODY), "--rows", "4-7", "--num", "5", "--out", out)
    assert res.returncode == 0, res.stderr
    with np.load(out) as f:
        assert sorted(f.files) == sorted([f"sefa{k}" for k in range(5)] + ["_eigenvalues", "_rows"])
        assert f["_rows"].tolist() == [4, 7]
    assert_one_line_error(run("directions", "sefa", "--network", fixture_path(BODY), "--rows", "4-12",
                              "--out", tmp_path / "x.npz"), "outside this generator's W+ rows")


def payload_pickle() -> bytes:
    return pickle.dumps(Payload())


BAD_FILES = {
    "wrong_shape.npy": (lambda p: np.save(p, np.zeros(65, np.float32)), "has shape [65]"),
    "too_many_rows.npy": (lambda p: np.save(p, np.zeros((11, 64), np.float32)), "has shape [11, 64]"),
    "nan.npy": (lambda p: np.save(p, np.full(64, np.nan, np.float32)), "NaN"),
    "payload.pkl": (lambda p: p.write_bytes(payload_pickle()), "not on the allow-list"),
    "truncated.npy": (lambda p: p.write_bytes(_npy(np.zeros(64, np.float32))[:-20]), "truncated"),
    "truncated.npz": (lambda p: p.write_bytes(_npz(a=np.zeros(64, np.float32))[:-30]), "cannot read"),
    "object.npy": (lambda p: np.save(p, np.array([None] * 64, dtype=object), allow_pickle=True), "object"),
    "text.pt": (lambda p: p.write_bytes(b"not a torch file at all"), "not a torch.save file"),
    "inf.pt": (lambda p: torch.save(torch.full((64,), float("inf")), p), "NaN or inf"),
    "style.npz": (lambda p: np.savez(p, s0=np.zeros(7, np.float32)), "that layer has 64 channels"),
    "empty.npy": (lambda p: p.write_bytes(b""), "is empty"),
}


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_direction_files_are_refused_in_one_line(name, tmp_path):
    make, pattern = BAD_FILES[name]
    path = tmp_path / name
    make(path)
    res = run("edit", "--network", fixture_path(BODY), "--seeds", "0", "--edit", f"{path}=1",
              "--outdir", tmp_path / "out")
    assert_one_line_error(res, pattern)
    assert not (tmp_path / "out").exists()


def test_huge_files_rows_beyond_the_network_and_stylegan3_style_edits_are_refused(tmp_path, monkeypatch):
    np.save(tmp_path / "d.npy", np.zeros(64, np.float32))
    monkeypatch.setattr(readers, "MAX_FILE_BYTES", 100)
    assert_one_line_error(run("edit", "--network", fixture_path(BODY), "--seeds", "0", "--edit",
                              f"{tmp_path / 'd.npy'}=1", "--outdir", tmp_path / "o"), "over the 100-byte limit")
    monkeypatch.undo()
    assert_one_line_error(run("edit", "--network", fixture_path(BODY), "--seeds", "0", "--edit",
                              f"{tmp_path / 'd.npy'}@8-12=1", "--outdir", tmp_path / "o"), "beyond this generator")
    assert_one_line_error(run("edit", "--network", fixture_path(BODY), "--seeds", "0", "--edit",
                              f"{tmp_path / 'd.npy'}=1e9", "--outdir", tmp_path / "o"), "strength")
    np.savez(tmp_path / "ss.npz", s0=np.zeros(64, np.float32))
    assert_one_line_error(run("edit", "--network", fixture_path("sg3t_face64.pkl"), "--seeds", "0", "--edit",
                              f"{tmp_path / 'ss.npz'}=1", "--outdir", tmp_path / "o"), "need a StyleGAN2 network")


def test_w_edits_work_for_stylegan3(tmp_path):
    G = load_checkpoint(fixture_path("sg3t_face64.pkl")).generator
    d = np.random.RandomState(7).randn(G.w_dim).astype(np.float32)
    np.save(tmp_path / "d.npy", d)
    loaded = load_edit(parse_edit(f"{tmp_path / 'd.npy'}@1-4=2"), generator_shape(G))
    ws = hand_ws(G, 0)
    want = ws.clone()
    want[:, 1:5] += 2 * torch.from_numpy(d)
    with torch.no_grad():
        torch.testing.assert_close(synthesize_edited(G, ws, [loaded]), G.synthesis(want), atol=TOL, rtol=0)


def test_edit_specs_parse_and_round_trip():
    e = parse_edit("dirs.npz:sefa0@4-7%0.2=-2.5")
    assert e == Edit("dirs.npz", "sefa0", (4, 7), -2.5, 0.2)
    assert parse_edit(e.text()) == e
    assert parse_edit("boundary.npy", strength_required=False) == Edit("boundary.npy")
    assert parse_edit("default-body:upper_length=2").source == "default-body"
    for bad in ("d.npy", "d.npy=abc", "d.npy@7-4=1", "d.npy=nan", "d.npy=1e5", "=2", "d.npy@99=1"):
        with pytest.raises(InsetganError):
            parse_edit(bad)


def test_boundary_fits_a_separable_set():
    rng = np.random.RandomState(8)
    normal = rng.randn(32)
    normal /= np.linalg.norm(normal)
    w = rng.randn(600, 32) * 2 + 0.5
    w = w[np.abs(w @ normal - 0.3) > 0.5]  # a margin: the set is separable with room to spare
    labels = (w @ normal > 0.3).astype(int)
    for kind in ("logistic", "svm"):
        res = fit_boundary(w, labels, BoundaryConfig(kind=kind))
        assert res.heldout_accuracy >= 0.95 and res.train_accuracy >= 0.97
        assert float(res.normal @ normal) > 0.9
        assert abs(np.linalg.norm(res.normal) - 1) < 1e-9
    with pytest.raises(InsetganError, match="at least 2 of each"):
        fit_boundary(w, np.zeros(len(w), int))


def test_samples_labels_and_boundary_commands(tmp_path):
    out = tmp_path / "samples"
    res = run("directions", "samples", "--network", fixture_path(BODY), "--num", "12", "--out", out)
    assert res.returncode == 0, res.stderr
    assert {p.name for p in out.iterdir()} == {"grid.png", "latents.npz", "labels.csv", "report.json"}
    with np.load(out / "latents.npz") as f:
        w, seeds = f["w"], f["seeds"]
    assert w.shape == (12, 64) and seeds.tolist() == list(range(12))
    labels = (w[:, 0] > np.median(w[:, 0])).astype(int)
    (out / "labels.csv").write_text("seed,label\n" + "".join(f"{s},{y}\n" for s, y in zip(range(12), labels)))
    res = run("directions", "boundary", "--latents", out / "latents.npz", "--labels", out / "labels.csv",
              "--out", tmp_path / "d.npy")
    assert res.returncode == 0, res.stderr
    assert "held-out accuracy" in res.stdout
    d = np.load(tmp_path / "d.npy")
    assert d.shape == (1, 64) and abs(np.linalg.norm(d) - 1) < 1e-5
    assert_one_line_error(run("directions", "samples", "--network", fixture_path(BODY), "--num", "2", "--out", out),
                          "may hold your labels")


@pytest.mark.parametrize("text, pattern", [
    ("seed,label\n0,2\n", "label 0 or 1"),
    ("seed,label\n99,1\n", "not in the latents file"),
    ("seed,label\n0,1\n0,0\n", "labelled twice"),
    ("seed;label\n", "two columns"),
    ("name,label\n", "first line"),
    ("", "is empty"),
])
def test_bad_label_files_are_one_line_errors(tmp_path, text, pattern):
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(InsetganError, match=pattern):
        read_labels(tmp_path / "labels.csv", np.arange(4))


def test_strip_job_writes_its_grid_and_report_atomically(tmp_path, monkeypatch):
    np.save(tmp_path / "d.npy", np.ones(64, np.float32))
    out = tmp_path / "strip"
    res = run("edit", "--network", fixture_path(BODY), "--seeds", "0-1", "--edit", str(tmp_path / "d.npy"),
              "--strengths", "-1,0,1,2", "--outdir", out)
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["strengths"] == [-1, 0, 1, 2] and report["seeds"] == [0, 1]
    assert report["edits"][0]["kind"] == "w" and len(report["edits"][0]["sha256"]) == 64
    assert sorted(report["outputs"]) == sorted(p.name for p in out.iterdir())
    assert Image.open(out / "grid.png").size == (4 * 32 + 3 * 2, 2 * 64 + 2)
    calls = []

    def failing(path, data):
        calls.append(path)
        if len(calls) > 2:
            raise OSError("disk full")
        with open(path, "xb") as f:
            f.write(data)

    monkeypatch.setattr(outputs, "write_bytes", failing)
    fresh = tmp_path / "fresh"
    res = run("edit", "--network", fixture_path(BODY), "--seeds", "0", "--edit", str(tmp_path / "d.npy"),
              "--outdir", fresh)
    assert_one_line_error(res, "disk full")
    assert not fresh.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_builtin_body_directions_match_the_shipped_body():
    record = json.loads((directions_dir() / "body.json").read_text())
    body = models_dir() / record["generator"]["file"]
    assert hashlib.sha256(body.read_bytes()).hexdigest() == record["generator"]["sha256"], \
        "the built-in body was retrained: rerun scripts/body_directions.py --ship"
    G = load_checkpoint(body).generator
    loaded = load_edits([parse_edit("default-body:upper_length=1"), parse_edit("default-body:lower_length=-1")],
                        generator_shape(G))
    assert all(e.kind == "w" for e in loaded)
    for name, numbers in record["directions"].items():
        assert numbers["measured"]["score_change_-3_to_3"] > 0, name  # positive strengths lengthen the garment


def test_a_payload_pickle_is_refused_by_the_real_process(tmp_path):
    (tmp_path / "d.pkl").write_bytes(payload_pickle())
    res = run_subprocess("edit", "--network", fixture_path(BODY), "--seeds", "0", "--edit", f"{tmp_path / 'd.pkl'}=1",
                         "--outdir", tmp_path / "out", timeout=120)
    assert_one_line_error(res, "not on the allow-list")
    assert not (tmp_path / "out").exists()
