"""Keeping what the user gave: body drift, outfit distance, the face check and --keep-best."""
from __future__ import annotations

import dataclasses
import json
import statistics

import numpy as np
import pytest
import torch
from PIL import Image

from insetgan.eval.keep import SCORE_TOLERANCE, Given, body_drift, body_mask, face_verdict, measure
from insetgan.inversion.embedding import embed_outfit
from insetgan.inversion.perceptual import l1_ssim
from insetgan.jobs.compose import ComposeInputs, compose_candidates, run_compose
from insetgan.jobs.options import request_from
from insetgan.jobs.progress import silent
from insetgan.jobs.requests import ComposeRequest
from insetgan.jobs.setup import UserFace
from insetgan.jobs.sources import LatentSource
from insetgan.method.config import Stage, load_config
from insetgan.method.optimize import render
from insetgan.method.regions import Box
from insetgan.models import load_network
from insetgan.networks import native
from insetgan.networks.checkpoints import load_generator
from insetgan.networks.config import GeneratorConfig
from insetgan.networks.generator import Generator
from insetgan.sampling import z_from_seed
from tests.cli_run import run
from tests.conftest import REPO, SHARED, fixture_path

BODY, FACE = fixture_path("sghuman_body64x32.pkl"), fixture_path("sg2ada_face64.pkl")
PHOTO = SHARED / "data" / "ccp" / "photos" / "0001.jpg"
FACE_BOX = Box(8, 2, 16, 16)


def test_body_mask_leaves_out_the_dilated_boxes():
    m = body_mask(64, 32, [FACE_BOX], feather=0.125, device=torch.device("cpu"))[0, 0]
    # blend margin = max(2, ceil(0.125 * 16)) = 2 px around the box
    assert m[0:20, 6:26].sum() == 0  # y 2..18 and x 8..24 grown by 2
    assert m[0, 5] == 1 and m[20, 12] == 1 and m[0, 26] == 1 and m[40:, :].min() == 1


def test_body_drift_is_zero_for_the_start_and_grows_with_change():
    g = torch.Generator().manual_seed(0)
    start = torch.rand(2, 3, 64, 32, generator=g) * 2 - 1
    moved = start.clone()
    moved[1, :, 40:, :] += 0.5  # candidate 1 changes its legs; candidate 0 only inside the face box
    moved[0, :, 4:16, 10:22] = 0.0
    rows = body_drift(start, moved, [[FACE_BOX], [FACE_BOX]], 0.125, l1_ssim)
    assert rows[0] == {"l1": 0.0, "perceptual": 0.0}
    assert rows[1]["l1"] > 0.1 and rows[1]["perceptual"] > 0


def test_face_verdict():
    assert not face_verdict(1.2, 1.2, None, has_reference=False).worse
    assert not face_verdict(1.2, 1.2 - SCORE_TOLERANCE / 2, None, has_reference=False).worse
    assert not face_verdict(None, None, None, has_reference=False).worse
    v = face_verdict(1.2, 0.4, None, has_reference=False)
    assert v.worse and "less well" in v.reasons[0]
    assert face_verdict(0.3, None, None, has_reference=False).worse  # the face is gone
    assert not face_verdict(0.3, 0.5, 0.35, has_reference=True).worse
    v = face_verdict(0.3, 0.5, 0.61, has_reference=True)
    assert v.worse and "0.610" in v.reasons[0]
    assert "cannot be measured" in face_verdict(0.3, 0.5, None, has_reference=True).reasons[0]


def _compose(steps: int, outfit: torch.Tensor | None = None):
    body, face = load_generator(BODY), load_generator(FACE)
    cfg = dataclasses.replace(load_config("default"), stages=(Stage("joint", steps, ("canvas", "insets"), "joint"),))
    inp = ComposeInputs(body, face, (LatentSource(seed=1),), LatentSource(seed=2, key="face"),
                        face_box=FACE_BOX, detector="fixed", outfit=outfit)
    return compose_candidates(inp, cfg, torch.device("cpu"), l1_ssim, "l1-ssim")


def test_zero_steps_measure_zero_and_a_moved_canvas_measures_positive():
    body = load_generator(BODY)
    with torch.no_grad():
        outfit = render(body, body.mapping(z_from_seed(7, body.z_dim), None, truncation_psi=0.7))
    zero = _compose(0, outfit).report["metrics"]
    for row in zero["before"] + zero["after"]:
        assert row["body_drift_l1"] == 0.0 and row["body_drift_perceptual"] == 0.0
    assert zero["after"][0]["outfit_l1"] == zero["before"][0]["outfit_l1"] > 0
    moved = _compose(12, outfit).report["metrics"]
    assert moved["after"][0]["body_drift_l1"] > 0 and moved["after"][0]["body_drift_perceptual"] > 0
    assert moved["after"][0]["outfit_l1"] != moved["before"][0]["outfit_l1"]
    assert "face:score" in moved["after"][0]  # dlib is installed with the test extras


def test_measure_outfit_mask_limits_the_region():
    img = torch.zeros(1, 3, 16, 8)
    outfit = torch.zeros(1, 3, 16, 8)
    outfit[..., :, :4] = 1.0  # differs only on the left half
    mask = torch.zeros(1, 1, 16, 8)
    mask[..., :, 4:] = 1.0
    boxes = {"face": [Box(0, 0, 2, 2)]}  # with its 2 px margin it covers rows 0-3 of the left half
    assert measure(img, img, boxes, Given(outfit=outfit, outfit_mask=mask), 0.1, None, None)[0]["outfit_l1"] == 0
    expected = (12 * 4) / (16 * 8 - 4 * 4)  # the left half below the box, over everything outside it
    assert measure(img, img, boxes, Given(outfit=outfit), 0.1, None, None)[0]["outfit_l1"] == pytest.approx(expected)


def test_outfit_defaults_keep_the_body_on_the_builtin_models(tmp_path):
    """The issue's bar: drift <= 1/4 of the median distance to 8 random bodies; seam below the naive paste."""
    photo, mask = REPO / "examples" / "fullbody.jpg", REPO / "examples" / "fullbody_mask.png"
    req = request_from(ComposeRequest, {"outfit": str(photo), "outfit_mask": str(mask), "invert_steps": 150})
    res = run_compose(req, silent, tmp_path)
    for name, data in res.cache_files.items():
        (tmp_path / name).write_bytes(data)
    out = res.job.report
    assert out["config"]["canvas_trust"] > 0 and out["config"]["canvas_weights"]["body_l1"] >= 5
    before, after = out["metrics"]["before"][0], out["metrics"]["after"][0]
    assert after["face:seam"] < before["face:seam"]
    # The reference distance: the inverted outfit (the start canvas) against 8 random bodies.
    dev = torch.device("cpu")
    G = load_network("default-body", dev, "--body", "body")[0].generator
    emb = embed_outfit(str(photo), str(mask), G, req.embed_config, l1_ssim, tmp_path, dev)
    assert emb.info["cache"]["hit"]  # the same inversion the job made
    with torch.no_grad():
        start = render(emb.G, emb.ws)
        z = torch.cat([z_from_seed(s, G.z_dim) for s in range(8)])
        randoms = render(G, G.mapping(z, None, truncation_psi=0.7))
    boxes = [[Box(*b[:4]) for b in out["boxes"]["final"]["face"]]] * 8
    ref = statistics.median(d["l1"] for d in body_drift(start, randoms, boxes, 0.125, None))
    assert 0 < after["body_drift_l1"] <= 0.25 * ref, (after["body_drift_l1"], ref)


@pytest.fixture(scope="module")
def random_face_net(tmp_path_factory):
    """A face network with random weights: it draws no face, a deliberately bad inset."""
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(z_dim=16, w_dim=16, img_resolution=64, channel_base=256, channel_max=32))
    path = tmp_path_factory.mktemp("rand") / "random_face.safetensors"
    native.save(G.eval(), path)
    return path


def test_refine_face_with_a_bad_inset_warns_and_keep_best_returns_the_photo(tmp_path, random_face_net):
    out = tmp_path / "bad"
    proc = run("refine-face", PHOTO, "--face-net", random_face_net, "--steps", 3, "--search", 2, "--outdir", out,
               "--progress", "off")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("WARNING: candidate 0")]
    assert warnings and all(len(w) < 300 for w in warnings)
    last = proc.stderr.strip().splitlines()[-1]
    assert "seam" in last and "face score" in last and "identity" in last
    rep = json.loads((out / "report.json").read_text())
    check = rep["face_check"]
    assert check["reference"] == "original face" and check["worse"] == [True] and check["kept_start_face"] == [False]
    before, after = rep["metrics"]["before"][0], rep["metrics"]["after"][0]
    assert before["face:score"] > 0 and before["face:identity"] == 0.0  # the photo's own face, measured
    assert (after["face:score"] or -1) < before["face:score"] or (after["face:identity"] or 1) >= 0.6

    kept = tmp_path / "kept"
    proc = run("refine-face", PHOTO, "--face-net", random_face_net, "--steps", 3, "--search", 2, "--keep-best",
               "--outdir", kept, "--progress", "off")
    assert proc.returncode == 0, proc.stderr
    assert "the start face was kept" in proc.stderr
    rep = json.loads((kept / "report.json").read_text())
    assert rep["face_check"]["kept_start_face"] == [True]
    original = np.asarray(Image.open(PHOTO).convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(kept / "result.png")), original)
    # The start face itself is not flagged: the kept result measures exactly as the start.
    b, a = rep["metrics"]["before"][0], rep["metrics"]["after"][0]
    assert a["face:score"] == b["face:score"] and a["face:identity"] == 0.0
    assert not face_verdict(b["face:score"], a["face:score"], a["face:identity"], has_reference=True).worse


def test_compose_keep_best_puts_the_start_face_back(random_face_net):
    body, face = load_generator(BODY), load_generator(random_face_net)
    cfg = load_config("default").with_steps(4)
    selfie = Image.open(REPO / "tests" / "data" / "astronaut.jpg").convert("RGB")
    inp = ComposeInputs(body, face, (LatentSource(seed=1),), LatentSource(seed=2, key="face"),
                        face_box=FACE_BOX, detector="fixed", user_face=UserFace(None, selfie))
    plain = compose_candidates(inp, cfg, torch.device("cpu"), l1_ssim, "l1-ssim")
    check = plain.report["face_check"]
    assert check["reference"] == "selfie" and check["worse"] == [True] and check["kept_start_face"] == [False]
    assert "cannot be measured" in check["warnings"][0]  # a random network draws no face
    assert plain.files["face.png"] != plain.files["face_start.png"]
    kept = compose_candidates(inp, cfg, torch.device("cpu"), l1_ssim, "l1-ssim", keep_best=True)
    assert kept.report["face_check"]["kept_start_face"] == [True]
    assert kept.files["face.png"] == kept.files["face_start.png"]
    assert kept.files["canvas.png"] == plain.files["canvas.png"]
    assert kept.files["result.png"] != plain.files["result.png"]
