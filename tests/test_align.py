"""Face alignment: FFHQ crop geometry on a real photo, padding, EXIF, grey input, 5-point crop, CLI errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from insetgan.images import open_rgb
from insetgan.inversion import align as al
from tests.cli_run import assert_one_line_error, run, run_subprocess
from tests.conftest import REPO

ASTRONAUT = REPO / "tests" / "data" / "astronaut.jpg"


@pytest.fixture(scope="module")
def det():
    return al.LandmarkDetector()


def _eyes(det, img):
    lm = det.largest(img).landmarks
    return lm[36:42].mean(0), lm[42:48].mean(0)


def _check_ffhq_geometry(det, aligned, size):
    left, right = _eyes(det, aligned)
    # The FFHQ quad puts the eyes a quarter of the side apart around the centre, slightly above it.
    assert left[0] / size == pytest.approx(0.375, abs=0.03) and right[0] / size == pytest.approx(0.625, abs=0.03)
    assert (left[1] + right[1]) / 2 / size == pytest.approx(0.47, abs=0.04)
    assert abs(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0]))) < 3


def test_ffhq_alignment_of_a_real_photo(det):
    img = open_rgb(ASTRONAUT)
    aligned = al.align_ffhq(img, det.largest(img).landmarks, 256)
    assert aligned.size == (256, 256)
    _check_ffhq_geometry(det, aligned, 256)


def test_rotated_and_edge_cut_photos_are_aligned_upright(det):
    img = open_rgb(ASTRONAUT)
    rotated = img.rotate(20, resample=Image.BICUBIC, expand=True, fillcolor=(128, 128, 128))
    _check_ffhq_geometry(det, al.align_ffhq(rotated, det.largest(rotated).landmarks, 256), 256)
    # Face close to the top-left corner: the quad leaves the photo and is padded by reflection.
    cut = img.crop((120, 60, 420, 400))
    aligned = al.align_ffhq(cut, det.largest(cut).landmarks, 256)
    arr = np.asarray(aligned)
    assert arr.shape == (256, 256, 3) and arr.std() > 10
    _check_ffhq_geometry(det, aligned, 256)


def test_exif_orientation_and_grey_inputs(tmp_path, det):
    img = open_rgb(ASTRONAUT)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the stored pixels are turned the other way
    img.rotate(90, expand=True).save(tmp_path / "exif.jpg", exif=exif, quality=95)
    upright = open_rgb(tmp_path / "exif.jpg")
    assert upright.size == img.size
    _check_ffhq_geometry(det, al.align_ffhq(upright, det.largest(upright).landmarks, 256), 256)
    img.convert("L").save(tmp_path / "grey.png")
    grey = open_rgb(tmp_path / "grey.png")
    assert grey.mode == "RGB" and det.largest(grey) is not None


def test_similarity_recovers_a_known_transform_and_five_point_crop():
    g = np.random.RandomState(0)
    src = g.rand(5, 2) * 100
    a, s, t = np.radians(17), 1.7, np.array([5.0, -3.0])
    R = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    M = al.similarity(src, src @ R.T + t)
    np.testing.assert_allclose(M[:, :2], R, atol=1e-9)
    np.testing.assert_allclose(M[:, 2], t, atol=1e-9)
    # A synthetic image with bright dots at the 5 points: after alignment they sit on the reference.
    pts = al.ARCFACE_112 * 2.3 + [40, 70]
    canvas = np.zeros((400, 400), np.float32)
    yy, xx = np.mgrid[:400, :400]
    for x, y in pts:
        canvas += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 3.0 ** 2))
    img = Image.fromarray((canvas / canvas.max() * 255).astype(np.uint8)).convert("RGB")
    crop = np.asarray(al.align_five(img, pts, 112))[..., 0].astype(np.float64)
    for x, y in al.ARCFACE_112:
        yi, xi = int(round(y)), int(round(x))
        win = crop[yi - 3:yi + 4, xi - 3:xi + 4]
        wy, wx = np.unravel_index(win.argmax(), win.shape)
        assert abs(wx - 3) <= 1 and abs(wy - 3) <= 1


def test_align_cli(tmp_path):
    out = tmp_path / "a.png"
    proc = run_subprocess("--quiet", "align", ASTRONAUT, "--size", 128, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (128, 128)
    proc = run("align", ASTRONAUT, "--five-point", "--size", 112, "--out", tmp_path / "id.png")
    assert proc.returncode == 0 and "faces found" in proc.stderr  # the photo has a second, small face
    noise = np.random.RandomState(0).randint(0, 256, (128, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    assert_one_line_error(run("align", tmp_path / "noise.png", "--out", tmp_path / "n.png"), "no face found")
    assert_one_line_error(run("align", tmp_path / "missing.jpg", "--out", tmp_path / "m.png"), "not found")
    assert not (tmp_path / "n.png").exists() and not (tmp_path / "m.png").exists()
