"""Built-in model names and region priors carried in a network's metadata."""
from __future__ import annotations

import json

import pytest

from insetgan import models
from insetgan.models import region_priors
from insetgan.networks import native
from insetgan.networks.checkpoints import load_generator
from tests.cli_run import assert_one_line_error, run
from tests.conftest import fixture_path


def test_default_names_resolve_or_fail_clearly(tmp_path, monkeypatch):
    assert models.resolve_network("some.pkl", "body") == "some.pkl"
    monkeypatch.setattr(models, "models_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="no built-in face model"):
        models.resolve_network("default", "face")
    (tmp_path / "face.safetensors").write_bytes(b"x")
    assert models.resolve_network("default", "face") == str(tmp_path / "face.safetensors")
    with pytest.raises(ValueError, match="no built-in network"):
        models.resolve_network("default", "network")


def test_missing_builtin_models_give_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("INSETGAN_MODELS_DIR", str(tmp_path / "none"))
    r = run("compose", "--face-seed", "1", "--outdir", tmp_path / "o")
    assert_one_line_error(r, "no built-in body model")
    assert not (tmp_path / "o").exists()


def test_region_priors_parsing():
    assert region_priors({}) == {}
    assert region_priors({"region_priors": json.dumps({"face": [0.4, 0.03, 0.2, 0.1], "shoes": None})}) == {
        "face": (0.4, 0.03, 0.2, 0.1)}
    assert region_priors({"region_priors": "{not json"}) == {}
    prepared = {"face": [0.3709, 0.0411, 0.2687, 0.1343], "shoes": [0.3387, 0.8695, 0.2798, 0.1059],
                "from": {"face": 1873, "shoes": 930}, "format": "relative x, y, w, h"}  # as prepare writes it
    assert region_priors({"region_priors": json.dumps(prepared)}) == {
        "face": (0.3709, 0.0411, 0.2687, 0.1343), "shoes": (0.3387, 0.8695, 0.2798, 0.1059)}
    assert region_priors({"region_priors": json.dumps({"face": [2, 0, 1, 1]})}) == {}


def test_compose_uses_the_body_networks_face_prior(tmp_path):
    body = load_generator(fixture_path("sghuman_body64x32.pkl"))
    path = tmp_path / "body.safetensors"
    native.save(body, path, extra={"region_priors": {"face": [0.25, 0.0625, 0.5, 0.25]}})
    out = tmp_path / "c"
    r = run("--quiet", "compose", "--body", path, "--face-net", fixture_path("sg2ada_face64.pkl"),
            "--detector", "fixed", "--steps", "2", "--outdir", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["region_priors"] == {"face": [0.25, 0.0625, 0.5, 0.25]}
    assert rep["boxes"]["start"]["face"][0][:4] == [8.0, 4.0, 16.0, 16.0]  # 32 wide, 64 high canvas


def test_convert_to_fp16_keeps_region_priors(tmp_path):
    body = load_generator(fixture_path("sghuman_body64x32.pkl"))
    src, dst = tmp_path / "b.safetensors", tmp_path / "b16.safetensors"
    native.save(body, src, extra={"region_priors": {"face": [0.25, 0.0625, 0.5, 0.25]}})
    r = run("--quiet", "convert", src, dst, "--fp16")
    assert r.returncode == 0, r.stderr
    assert json.loads(native.read_metadata(dst)["region_priors"]) == {"face": [0.25, 0.0625, 0.5, 0.25]}
    assert dst.stat().st_size < 0.6 * src.stat().st_size


def test_eval_models_script_runs(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "ev"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "eval_models.py"),
                           "--body", str(fixture_path("sghuman_body64x32.pkl")),
                           "--face", str(fixture_path("sg2ada_face64.pkl")),
                           "--shoes", str(fixture_path("rosinality_face64.pt")), "--selfie", str(REPO / "examples" / "selfie.jpg"),
                           "--samples", "2", "--seeds", "2", "--steps", "2", "--invert-steps", "10", "--outdir", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "eval.json").read_text())
    assert 0 <= res["face_rate"] <= 1 and 0 <= res["body_face_rate"] <= 1 and res["compose"]["seeds"] == 2
    assert all((out / f"{m}_grid.png").is_file() for m in ("face", "body", "shoes")) and "| face model" in proc.stdout
