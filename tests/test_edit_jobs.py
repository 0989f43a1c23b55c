"""``--edit`` / ``--face-edit`` in the jobs: generate, compose, sample-bodies and refine-face edit their starts.

Each edited start is compared with the same edit applied by hand (W rows added to the
truncated W+; a style edit as a shifted affine bias, see ``tests/test_editing.py``).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from insetgan.editing.layers import generator_shape
from insetgan.io import to_uint8
from insetgan.method.optimize import render
from insetgan.networks.checkpoints import load_checkpoint
from insetgan.models import resolve_network
from tests.cli_run import assert_one_line_error, run
from tests.conftest import SHARED, fixture_path
from tests.test_editing import TOL, hand_style_edit, hand_ws

BODY, FACE, SG3 = fixture_path("sghuman_body64x32.pkl"), fixture_path("sg2ada_face64.pkl"), \
    fixture_path("sg3t_face64.pkl")
PHOTO = SHARED / "data" / "ccp" / "photos" / "0001.jpg"
STYLE_LAYER = 3


@pytest.fixture(scope="module")
def nets():
    return {"body": load_checkpoint(BODY).generator, "face": load_checkpoint(FACE).generator}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, nets):
    """A W direction for the body (d.npy), one for the face (f.npy), a style-space one of the body (ss.npz) and
    one of three W+ rows (rows3.npy)."""
    folder = tmp_path_factory.mktemp("dirs")
    rng = np.random.RandomState(7)
    body, face = nets["body"], nets["face"]
    np.save(folder / "d.npy", rng.randn(body.w_dim).astype(np.float32))
    np.save(folder / "f.npy", rng.randn(face.w_dim).astype(np.float32))
    width = generator_shape(body).layers[STYLE_LAYER].width
    np.savez(folder / "ss.npz", **{f"s{STYLE_LAYER}": rng.randn(width).astype(np.float32)})
    np.save(folder / "rows3.npy", rng.randn(3, body.w_dim).astype(np.float32))  # fits no network here
    return folder


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


def _u8(G, ws) -> np.ndarray:
    with torch.no_grad():
        return to_uint8(render(G, ws)[0]).astype(int)


def test_generate_edit_matches_the_hand_edit(nets, dirs, tmp_path):
    body = nets["body"]
    d = torch.from_numpy(np.load(dirs / "d.npy"))
    v = np.load(dirs / "ss.npz")[f"s{STYLE_LAYER}"]
    out = tmp_path / "g"
    res = run("generate", "--network", BODY, "--seeds", "2,5", "--trunc", "0.7", "--raw", "--outdir", out,
              "--edit", f"{dirs / 'd.npy'}@4-7=1.5", "--edit", f"{dirs / 'ss.npz'}=0.5")
    assert res.returncode == 0, res.stderr
    styled = hand_style_edit(body, STYLE_LAYER, 0.5 * v)
    for seed in (2, 5):
        ws = hand_ws(body, seed, 0.7)
        ws[:, 4:8] += 1.5 * d
        with torch.no_grad():
            want = styled.synthesis(ws, noise_mode="const")[0].numpy()
        np.testing.assert_allclose(np.load(out / f"seed{seed:04d}.npy"), want, atol=TOL, rtol=0)
    report = json.loads((out / "report.json").read_text())
    assert [e["spec"] for e in report["edits"]] == [f"{dirs / 'd.npy'}@4-7=1.5", f"{dirs / 'ss.npz'}=0.5"]
    assert report["edits"][0]["rows_touched"] == [4, 5, 6, 7] and report["edits"][1]["layers_touched"] == [3]
    # Without --edit the images are those of plain sampling, and the report says so.
    plain = tmp_path / "p"
    assert run("generate", "--network", BODY, "--seeds", "2", "--trunc", "0.7", "--raw", "--outdir", plain).returncode == 0
    with torch.no_grad():
        np.testing.assert_array_equal(np.load(plain / "seed0002.npy"),
                                      body.synthesis(hand_ws(body, 2, 0.7), noise_mode="const")[0].numpy())
    assert json.loads((plain / "report.json").read_text())["edits"] == []


def test_compose_edits_the_body_and_face_starts_as_by_hand(nets, dirs, tmp_path):
    body, face = nets["body"], nets["face"]
    out = tmp_path / "c"
    res = run("--quiet", "compose", "--body", BODY, "--face-net", FACE, "--body-seed", 1, "--face-seed", 2,
              "--face-box", "8,2,16,16", "--steps", 2, "--outdir", out,
              "--edit", f"{dirs / 'd.npy'}@0-5=2", "--face-edit", f"{dirs / 'f.npy'}=-1.5")
    assert res.returncode == 0, res.stderr
    body_ws = hand_ws(body, 1, 0.7)
    body_ws[:, :6] += 2 * torch.from_numpy(np.load(dirs / "d.npy"))
    face_ws = hand_ws(face, 2, 0.7) - 1.5 * torch.from_numpy(np.load(dirs / "f.npy"))
    assert np.abs(_png(out / "canvas.png") - _u8(body, body_ws)).max() <= 1
    assert np.abs(_png(out / "face_start.png") - _u8(face, face_ws)).max() <= 1
    report = json.loads((out / "report.json").read_text())
    assert [e["spec"] for e in report["edits"]["canvas"]] == [f"{dirs / 'd.npy'}@0-5=2"]
    assert [e["spec"] for e in report["edits"]["face"]] == [f"{dirs / 'f.npy'}=-1.5"]
    assert report["request"]["edits"] == [f"{dirs / 'd.npy'}@0-5=2"]
    before, after = report["metrics"]["before"][0], report["metrics"]["after"][0]
    assert after["face:coarse_l1"] < before["face:coarse_l1"]  # the joint optimisation runs from the edited start


def test_a_style_edit_acts_on_the_canvas_while_composing(nets, dirs, tmp_path):
    body = nets["body"]
    v = np.load(dirs / "ss.npz")[f"s{STYLE_LAYER}"]
    out = tmp_path / "s"
    res = run("--quiet", "sample-bodies", "--body", BODY, "--face-net", FACE, "--body-seeds", "3-4", "--face-seed", 1,
              "--face-box", "8,2,16,16", "--steps", 1, "--outdir", out, "--edit", f"{dirs / 'ss.npz'}=2")
    assert res.returncode == 0, res.stderr
    styled = hand_style_edit(body, STYLE_LAYER, 2 * v)
    starts = _png(out / "canvas.png")
    for i, seed in enumerate((3, 4)):
        want = _u8(styled, hand_ws(body, seed, 0.7))
        assert np.abs(starts[:, i * 34:i * 34 + 32] - want).max() <= 1
        assert np.abs(want - _u8(body, hand_ws(body, seed, 0.7))).max() > 8  # the edit shows
    assert json.loads((out / "report.json").read_text())["edits"]["canvas"][0]["kind"] == "s"


def test_refine_face_edits_the_face_start(nets, dirs, tmp_path):
    out = tmp_path / "r"
    res = run("--quiet", "refine-face", PHOTO, "--face-net", FACE, "--face-box", "170,20,80,80", "--face-seed", 4,
              "--steps", 1, "--face-edit", f"{dirs / 'f.npy'}=2", "--outdir", out)
    assert res.returncode == 0, res.stderr
    face = nets["face"]
    want = _u8(face, hand_ws(face, 4, 0.7) + 2 * torch.from_numpy(np.load(dirs / "f.npy")))
    assert np.abs(_png(out / "face_start.png") - want).max() <= 1
    assert json.loads((out / "report.json").read_text())["edits"]["face"][0]["strength"] == 2


def test_compose_with_a_builtin_body_direction_on_the_builtin_models(tmp_path):
    body = load_checkpoint(resolve_network("default", "body")).generator
    runs = {}
    for name, extra in (("plain", []), ("edited", ["--edit", "default-body:lower_length=2"])):
        out = tmp_path / name
        res = run("--quiet", "compose", "--body-seed", 3, "--face-seed", 0, "--steps", 2, "--detector", "fixed",
                  "--outdir", out, *extra)
        assert res.returncode == 0, res.stderr
        runs[name] = (out, json.loads((out / "report.json").read_text()))
    (plain, _), (edited, report) = runs["plain"], runs["edited"]
    record = report["edits"]["canvas"][0]
    assert record["name"] == "lower_length" and record["strength"] == 2 and record["kind"] == "w"
    assert record["rows_touched"] == list(range(body.num_ws)) and len(record["sha256"]) == 64
    assert np.abs(_png(plain / "canvas.png") - _png(edited / "canvas.png")).mean() > 1
    assert report["metrics"]["after"][0]["face:seam"] is not None


@pytest.mark.parametrize("args, message", [
    (["--edit", "{dirs}/d.npy@3-1=1"], "--edit: invalid rows 3-1"),
    (["--face-edit", "{dirs}/missing.npy=1"], "--face-edit: "),
    (["--edit", "{dirs}/rows3.npy=1"], "--edit: direction"),
    (["--edit", "{dirs}/d.npy@12=1"], "beyond this generator's W+ rows"),
    (["--edit", "{dirs}/d.npy=1e9"], "strength"),
])
def test_bad_edits_are_one_line_errors(dirs, tmp_path, args, message):
    args = [a.format(dirs=dirs) for a in args]
    res = run("compose", "--body", BODY, "--face-net", FACE, "--face-box", "8,2,16,16", "--steps", 1,
              "--outdir", tmp_path / "o", *args)
    assert_one_line_error(res, message)
    assert not (tmp_path / "o").exists()


def test_a_style_edit_of_a_stylegan3_face_is_refused(tmp_path):
    G = load_checkpoint(SG3).generator
    np.savez(tmp_path / "ss.npz", s0=np.zeros(generator_shape(G).layers[0].width, np.float32))
    res = run("compose", "--body", BODY, "--face-net", SG3, "--face-box", "8,2,16,16", "--steps", 1,
              "--face-edit", f"{tmp_path / 'ss.npz'}=1", "--outdir", tmp_path / "o")
    assert_one_line_error(res, "style-space edits need a StyleGAN2 network")
    assert "Error: --face-edit: " in res.stderr
