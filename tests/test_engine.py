"""InsetGAN engine: loss terms, box tracking, the optimiser, presets and compositing."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from insetgan.inversion.align import ffhq_quad
from insetgan.inversion.perceptual import l1_ssim
from insetgan.method import losses as L
from insetgan.method.boxes import FixedBox, TrackConfig, clamp_box, ffhq_box, refine_box, track
from insetgan.method.config import OptimConfig, Stage, load_config
from insetgan.method.optimize import (CanvasInput, InsetInput, composite, evaluate, lr_factor, naive_paste, optimize,
                                      render, split_wplus)
from insetgan.method.regions import Box, box_mask
from insetgan.networks.checkpoints import load_generator
from insetgan.sampling import z_from_seed
from tests.conftest import fixture_path

FACE_BOX = Box(8, 2, 16, 16)


@pytest.fixture(scope="module")
def gens():
    return load_generator(fixture_path("sghuman_body64x32.pkl")), load_generator(fixture_path("sg2ada_face64.pkl"))


def _ws(G, seeds, psi=0.7):
    with torch.no_grad():
        return G.mapping(torch.cat([z_from_seed(s, G.z_dim) for s in seeds]), None, truncation_psi=psi)


def _quick(steps=40, **kw):
    return dataclasses.replace(load_config("default").with_steps(steps), **kw)


# ---------------------------------------------------------------- losses

def test_each_loss_is_zero_for_identical_inputs_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    b = a.clone()
    b[1] += 0.1 * torch.randn(3, 32, 32, generator=g)  # candidate 0 identical, candidate 1 different
    mask = box_mask(32, 32, Box(4, 4, 20, 20))
    terms = {
        **L.coarse_loss(a, b, l1_ssim, 16),
        **L.border_loss(a, b, 4, "l1", l1_ssim),
        **{f"mse_{k}": v for k, v in L.border_loss(a, b, 4, "mse").items()},
        **L.region_loss(a, b, mask, l1_ssim, "body"),
        **L.region_loss(a, b, 1 - mask, l1_ssim, "face"),
    }
    for name, value in terms.items():
        assert value.shape == (2,), name
        assert float(value[0]) == pytest.approx(0.0, abs=1e-7), name
        assert float(value[1]) > 1e-4, name
    # A change confined to the interior does not touch the border strip, and vice versa.
    c = a.clone()
    c[:, :, 10:20, 10:20] += 0.5
    assert float(L.border_loss(a, c, 4)["border"].max()) == 0.0
    assert float(L.coarse_loss(a, c, None)["coarse_l1"].min()) > 0


def test_reg_loss_zero_at_w_avg_and_grows_with_distance():
    w_avg = torch.randn(16)
    ws = w_avg.expand(2, 5, 16).clone()
    ws[1, 2] += 1.0
    w, delta = split_wplus(ws)
    parts = L.reg_loss(w, delta, w_avg)
    assert float(parts["reg_mean"][0]) == pytest.approx(0, abs=1e-6)
    assert float(parts["reg_delta"][0]) == pytest.approx(0, abs=1e-6)
    assert float(parts["reg_mean"][1]) > 0 and float(parts["reg_delta"][1]) > 0
    torch.testing.assert_close(w + delta, ws)


def test_loss_weights_validation_and_border_mask():
    with pytest.raises(ValueError):
        L.LossWeights(coarse_l1=-1)
    with pytest.raises(ValueError):
        dataclasses.replace(load_config("default"), border_metric="l3")
    with pytest.raises(ValueError):
        L.border_mask(8, 8, 4)
    m = L.border_mask(16, 16, 3)
    assert int(m.sum()) == 16 * 16 - 10 * 10


# ---------------------------------------------------------------- boxes

def test_track_follows_damped_and_rejects_absurd():
    cfg = TrackConfig(damping=0.5, max_scale=1.3, max_shift=0.25)
    prev = Box(100, 100, 40, 40)
    box, status = track(prev, Box(104, 100, 44, 44), cfg)
    assert status == "updated"
    assert box.center == pytest.approx((123, 121))  # halfway from (120,120) to (126,122)
    assert box.w == pytest.approx(42)
    for absurd in (Box(300, 300, 40, 40), Box(100, 100, 200, 200), Box(118, 118, 4, 4)):
        assert track(prev, absurd, cfg) == (prev, "rejected")
    assert track(prev, None, cfg) == (prev, "missed")


def test_ffhq_box_from_landmarks():
    lm = np.zeros((68, 2))
    lm[36:42] = [40, 50]  # left eye
    lm[42:48] = [60, 50]  # right eye
    lm[48], lm[54] = [42, 80], [58, 80]
    box = ffhq_box(ffhq_quad(lm))
    # eye_to_eye 20, eye_to_mouth 30 → half = max(40, 54) = 54, centre = (50, 50 + 3)
    assert box.center == pytest.approx((50, 53))
    assert box.w == pytest.approx(108) and box.h == pytest.approx(108) and box.angle == 0
    a = np.radians(20)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    tilted = (lm - 50) @ rot.T + 50  # the whole face turned by 20 degrees
    turned = ffhq_box(ffhq_quad(tilted), rotate=True)
    assert turned.angle == pytest.approx(20, abs=1e-6) and turned.w == pytest.approx(108)


def test_fixed_box_and_clamp():
    img = torch.zeros(1, 3, 200, 100)
    box = FixedBox((0.4, 0.05, 0.2, 0.1))(img)
    assert box == Box(40, 10, 20, 20)
    assert clamp_box(Box(-5, 190, 20, 20), 200, 100) == Box(0, 180, 20, 20)


def test_refine_box_finds_the_minimum_near_the_prior():
    target = Box(57, 43, 30, 30)

    def cost(b):
        return abs(b.center[0] - target.center[0]) + abs(b.center[1] - target.center[1]) + abs(b.w - target.w)

    best, c = refine_box(Box(50, 50, 30, 30), cost, 200, 200, radius=0.2, steps=4)
    assert c < cost(Box(50, 50, 30, 30)) / 3


# ---------------------------------------------------------------- optimiser

def test_joint_run_lowers_coarse_border_and_seam(gens):
    Gb, Gf = gens
    cfg = _quick(60)
    res = optimize(CanvasInput(Gb, _ws(Gb, [1])), [InsetInput("face", Gf, _ws(Gf, [2]), [FACE_BOX])], cfg)
    assert res.steps == 60 and len(res.history) == 60
    before = evaluate(res.canvas_start, res.insets_start, res.boxes_start,
                      naive_paste(res.canvas_start, res.insets_start, res.boxes_start), cfg, l1_ssim)[0]
    final = composite(res.canvas, res.insets, res.boxes, cfg.blend, cfg.feather)
    after = evaluate(res.canvas, res.insets, res.boxes, final, cfg, l1_ssim)[0]
    assert after["face:coarse_l1"] < 0.5 * before["face:coarse_l1"]
    assert after["face:border"] < 0.5 * before["face:border"]
    assert after["face:seam"] < before["face:seam"] and abs(after["face:seam"] - 1) < 0.5
    # The generators were only read.
    torch.testing.assert_close(render(Gf, res.inset_ws["face"]), res.insets["face"])


def test_same_seeds_same_result_and_batch_equals_singles(gens):
    Gb, Gf = gens
    cfg = _quick(20)
    body, face = _ws(Gb, [1, 5, 9]), _ws(Gf, [2, 2, 3])
    boxes = [FACE_BOX, Box(7, 3, 18, 18), FACE_BOX]
    batched = optimize(CanvasInput(Gb, body), [InsetInput("face", Gf, face, boxes)], cfg)
    again = optimize(CanvasInput(Gb, body), [InsetInput("face", Gf, face, boxes)], cfg)
    assert torch.equal(batched.canvas_ws, again.canvas_ws) and torch.equal(batched.canvas, again.canvas)
    # Batched and single convolutions round differently; SSIM's ratios and Adam's normalisation
    # amplify that to ~1e-2 after 20 steps, far below what coupled candidates would show (~1).
    for i in range(3):
        single = optimize(CanvasInput(Gb, body[i:i + 1]), [InsetInput("face", Gf, face[i:i + 1], [boxes[i]])], cfg)
        torch.testing.assert_close(single.canvas_ws[0], batched.canvas_ws[i], atol=1.5e-2, rtol=0)
        torch.testing.assert_close(single.inset_ws["face"][0], batched.inset_ws["face"][i], atol=1.5e-2, rtol=0)
        torch.testing.assert_close(single.canvas[0], batched.canvas[i], atol=3e-2, rtol=0)


class MovingDetector:
    """A fake detector whose face drifts right by 1 px per call; one absurd answer, one miss, one crash."""

    name = "fake"

    def __init__(self):
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        if self.calls == 3:
            return Box(0, 40, 30, 30)  # absurd: far away and twice the size
        if self.calls == 4:
            return None
        if self.calls == 5:
            raise RuntimeError("detector exploded")
        return Box(8 + self.calls, 2, 16, 16)


def test_box_tracking_follows_a_moving_detector_and_survives_failures(gens):
    Gb, Gf = gens
    stage = Stage("joint", 14, track_every=2, track_until=None)
    cfg = dataclasses.replace(_quick(14), stages=(stage,), track=TrackConfig(damping=0.0, max_scale=1.3,
                                                                            max_shift=0.5))
    det = MovingDetector()
    res = optimize(CanvasInput(Gb, _ws(Gb, [1])), [InsetInput("face", Gf, _ws(Gf, [2]), [FACE_BOX], det)], cfg)
    statuses = [e["status"] for e in res.box_events]
    assert statuses[:5] == ["updated", "updated", "rejected", "missed", "missed"]
    assert "exploded" in res.box_events[4]["error"]
    assert det.calls == 6 and statuses[5] == "updated"
    assert res.boxes["face"][0] == Box(14, 2, 16, 16)  # followed the last good detection (damping 0)
    assert res.boxes_start["face"][0] == FACE_BOX


def test_refine_with_a_fixed_canvas_touches_only_the_box(gens):
    _, Gf = gens
    g = torch.Generator().manual_seed(3)
    image = torch.rand(1, 3, 48, 40, generator=g) * 2 - 1
    box = Box(10, 12, 20, 20)
    cfg = _quick(15)
    res = optimize(CanvasInput(image=image), [InsetInput("face", Gf, _ws(Gf, [4]), [box])], cfg)
    assert res.canvas_ws is None and torch.equal(res.canvas, image)
    for method in ("hard", "feather", "laplacian"):
        out = composite(res.canvas, res.insets, res.boxes, method, 0.2)
        outside = box_mask(48, 40, box)[0, 0] == 0
        assert torch.equal(out[0][:, outside], image[0][:, outside]), method
        assert not torch.equal(out[0][:, ~outside], image[0][:, ~outside]), method


def test_alternating_schedule_and_stages_move_only_the_active_role(gens):
    Gb, Gf = gens
    cfg = dataclasses.replace(_quick(10), stages=(Stage("face", 3, ("insets",)), Stage("body", 3, ("canvas",)),
                                                  Stage("alt", 4, ("insets", "canvas"), "alternating", 2)))
    body, face = _ws(Gb, [1]), _ws(Gf, [2])
    res = optimize(CanvasInput(Gb, body), [InsetInput("face", Gf, face, [FACE_BOX])], cfg)
    assert [h["active"] for h in res.history] == ["insets"] * 3 + ["canvas"] * 3 + ["insets"] * 2 + ["canvas"] * 2
    only_face = dataclasses.replace(cfg, stages=cfg.stages[:1])
    res1 = optimize(CanvasInput(Gb, body), [InsetInput("face", Gf, face, [FACE_BOX])], only_face)
    assert torch.equal(res1.canvas_ws, body) and not torch.equal(res1.inset_ws["face"], face)


def test_optimize_rejects_bad_inputs(gens):
    Gb, Gf = gens
    cfg = _quick(2)
    body, face = _ws(Gb, [1]), _ws(Gf, [2])
    with pytest.raises(ValueError, match="on meta but the canvas is on cpu"):
        optimize(CanvasInput(Gb, body), [InsetInput("face", Gf, face.to("meta"), [FACE_BOX])], cfg)
    gray = torch.zeros(1, 1, 64, 32)
    with pytest.raises(ValueError, match="channel"):
        optimize(CanvasInput(image=gray), [InsetInput("face", Gf, face, [FACE_BOX])], cfg)
    with pytest.raises(ValueError, match="one per candidate"):
        optimize(CanvasInput(Gb, body), [InsetInput("face", Gf, face, [FACE_BOX, FACE_BOX])], cfg)
    with pytest.raises(ValueError, match="either"):
        optimize(CanvasInput(), [InsetInput("face", Gf, face, [FACE_BOX])], cfg)


# ---------------------------------------------------------------- configs

def test_presets_and_config_files(tmp_path):
    paper = load_config("paper")
    assert paper.steps == 400 and paper.lr_canvas == 0.035 and paper.lr_inset == 0.006
    assert paper.stages[0].schedule == "alternating" and paper.stages[0].switch_every == 40
    assert paper.inset_weights.border == 20000 and paper.canvas_weights.coarse_l1 == 1000
    sgh = load_config("stylegan-human")
    assert [s.steps for s in sgh.stages] == [25, 150, 500] and sgh.blend == "hard"
    default = load_config("default")
    assert OptimConfig.from_dict(default.to_dict()) == default
    assert OptimConfig.from_dict(paper.to_dict()) == paper
    (tmp_path / "c.json").write_text(json.dumps({"preset": "paper", "lr_canvas": 0.01,
                                                 "inset_weights": {"border": 5.0}}))
    cfg = load_config(str(tmp_path / "c.json"))
    assert cfg.lr_canvas == 0.01 and cfg.inset_weights.border == 5.0 and cfg.inset_weights.coarse_l1 == 500
    (tmp_path / "c.yaml").write_text("stages:\n  - {name: a, steps: 7, schedule: alternating, switch_every: 3}\n")
    assert load_config(str(tmp_path / "c.yaml")).stages[0].steps == 7
    for text, match in [('{"nope": 1}', "unknown config keys"), ("[1]", "mapping"), ("{", "invalid JSON"),
                        ('{"stages": [{"name": "x", "steps": 3, "schedule": "zigzag"}]}', "schedule"),
                        ('{"track": {"every": 5}}', "invalid config"),
                        ('{"inset_weights": {"seam": 1.0}}', "invalid config")]:
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(ValueError, match=match):
            load_config(str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match="unknown preset"):
        load_config("fastest")


def test_invalid_configs_are_refused():
    for kw, match in [(dict(blend="poisson"), "unknown blend"), (dict(lr_canvas=0.0), "lr_canvas"),
                      (dict(stages=()), "at least one stage"), (dict(border_px=0), "border_px")]:
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(load_config("default"), **kw)
    with pytest.raises(ValueError, match="roles"):
        Stage("x", 3, ("body",))
    with pytest.raises(ValueError, match="switch_every"):
        Stage("x", 3, switch_every=0)
    for kw in (dict(damping=1.0), dict(max_scale=0.5)):
        with pytest.raises(ValueError):
            TrackConfig(**kw)


def test_with_steps_rescales_the_schedule():
    sgh = load_config("stylegan-human").with_steps(135)
    assert sum(s.steps for s in sgh.stages) == 135
    assert [s.steps for s in sgh.stages] == [5, 30, 100] and sgh.stages[2].switch_every == 10
    with pytest.raises(ValueError):
        sgh.with_steps(0)


def test_lr_factor_ramps():
    assert lr_factor(0.0, 0.05, 0.25) == 0.0
    assert lr_factor(0.5, 0.05, 0.25) == pytest.approx(1.0)
    assert 0 < lr_factor(0.9, 0.05, 0.25) < 1
    assert lr_factor(0.0, 0.0, 0.0) == 1.0


def test_weighted_total_reads_every_weight_field():
    from dataclasses import fields, replace

    from insetgan.errors import InsetganError
    from insetgan.method.losses import LossWeights, weighted_total

    zero = LossWeights(**{f.name: 0.0 for f in fields(LossWeights)})
    names = [f.name for f in fields(LossWeights)]
    assert len(names) == 9
    for i, name in enumerate(names):
        parts = {f"face:{n}": torch.full((2,), float(j + 1)) for j, n in enumerate(names)}
        parts["face:reg_mean"] = torch.full((2,), 100.0)  # weighted by the caller, never here
        total = weighted_total(parts, replace(zero, **{name: 0.5}))
        assert torch.equal(total, torch.full((2,), 0.5 * (i + 1))), name
    with pytest.raises(InsetganError, match="every loss weight is zero"):
        weighted_total({"face:coarse_l1": torch.ones(1)}, zero)
