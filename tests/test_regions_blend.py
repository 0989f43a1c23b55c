"""Boxes, crop/paste transforms, blending and the seam score."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from insetgan.eval.seams import seam_score
from insetgan.method import blend
from insetgan.method.regions import Box, box_mask, crop, paste


def _smooth(n, c, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.randn(n, c, h // 8, w // 8, generator=g), size=(h, w), mode="bicubic",
                         align_corners=False)


def test_box_parse_and_validation():
    assert Box.parse("1,2,30,40") == Box(1, 2, 30, 40)
    assert Box.parse("1,2,3,4,15").angle == 15
    for bad in ("1,2,3", "a,b,c,d", "1,2,0,4"):
        with pytest.raises(ValueError):
            Box.parse(bad)
    assert Box(0, 0, 10, 10).inside(10, 10) and not Box(-1, 0, 10, 10).inside(10, 10)
    assert Box(2, 4, 8, 6).scaled(0.5) == Box(1, 2, 4, 3)


def test_crop_whole_canvas_is_identity_and_rotation_is_exact():
    canvas = torch.randn(2, 3, 16, 12)
    torch.testing.assert_close(crop(canvas, Box(0, 0, 12, 16), (16, 12)), canvas, rtol=1e-5, atol=1e-5)
    square = torch.randn(1, 3, 16, 16)
    rotated = crop(square, Box(0, 0, 16, 16, angle=90), (16, 16))
    torch.testing.assert_close(rotated, torch.rot90(square, 1, (-2, -1)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("box", [Box(4, 6, 8, 8), Box(3, 2, 8, 12), Box(5, 5, 8, 8, angle=30)])
def test_paste_then_crop_round_trips(box):
    canvas = torch.zeros(1, 3, 32, 24)
    inset = _smooth(1, 3, int(box.h), int(box.w), seed=1) if box.angle else torch.randn(1, 3, int(box.h), int(box.w))
    pasted, coverage = paste(canvas, inset, box)
    composite = blend.feather(canvas, pasted, coverage)
    back = crop(composite, box, tuple(inset.shape[-2:]))
    if box.angle == 0:
        torch.testing.assert_close(back, inset, rtol=1e-5, atol=1e-5)
        assert float(coverage.sum()) == pytest.approx(box.w * box.h, rel=1e-4)
    else:  # rotated: interior pixels round-trip up to bilinear interpolation error
        inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
        assert (back[inner] - inset[inner]).abs().mean() < 0.05


def test_crop_and_paste_are_differentiable():
    canvas = torch.randn(1, 3, 32, 32, requires_grad=True)
    crop(canvas, Box(8, 8, 16, 16), (8, 8)).sum().backward()
    assert canvas.grad.abs().sum() > 0 and canvas.grad[..., :4, :].abs().sum() == 0
    inset = torch.randn(1, 3, 16, 16, requires_grad=True)
    pasted, cov = paste(torch.zeros(1, 3, 32, 32), inset, Box(8, 8, 16, 16))
    (pasted * cov).sum().backward()
    assert inset.grad.abs().min() > 0


def test_paste_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="channels"):
        paste(torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, 4, 4), Box(0, 0, 4, 4))


def test_box_mask_area_and_feather():
    m = box_mask(20, 30, Box(5, 4, 10, 8))
    assert m.shape == (1, 1, 20, 30) and float(m.sum()) == 80
    soft = box_mask(20, 30, Box(5, 4, 10, 8), feather=3)
    assert float(soft.max()) == 1 and ((soft > 0) & (soft < 1)).any()
    assert torch.equal(soft > 0, m > 0)


def test_blends_limits_and_exact_reconstruction():
    a, b = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    ones, zeros = torch.ones(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    for method in blend.BLENDS:
        torch.testing.assert_close(blend.blend(a, b, ones, method), b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(blend.blend(a, b, zeros, method), a, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown blend"):
        blend.blend(a, b, ones, "poisson")


def test_seam_score_separates_seams_from_texture():
    img = _smooth(1, 3, 64, 64, seed=2)
    box = Box(16, 16, 32, 32)
    assert 0.6 < seam_score(img, box) < 1.4
    other = _smooth(1, 3, 64, 64, seed=3) + 1.0
    m = box_mask(64, 64, box)
    hard = blend.hard(img, other, m)
    soft = blend.feather(img, other, box_mask(64, 64, box, feather=6))
    lap = blend.laplacian(img, other, m)
    s_hard, s_soft, s_lap = seam_score(hard, box), seam_score(soft, box), seam_score(lap, box)
    assert s_hard > 2.0 and s_soft < s_hard and s_lap < s_hard
    with pytest.raises(ValueError, match="too small"):
        seam_score(img, Box(30, 30, 4, 4))
