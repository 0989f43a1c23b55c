"""Quality metrics: the Fréchet distance, the real-set protocol, HOG features and scripts/eval_run.py."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from insetgan.eval import frechet, real_sets
from insetgan.eval import model_quality as q
from tests.conftest import REPO

pytest.importorskip("dlib")

EVAL_RUN = REPO / "scripts" / "eval_run.py"


def _sqrt_2x2(m: np.ndarray) -> np.ndarray:
    """Closed-form square root of a 2×2 positive definite matrix: (M + √det·I) / √(tr + 2√det)."""
    s = math.sqrt(np.linalg.det(m))
    return (m + s * np.eye(2)) / math.sqrt(np.trace(m) + 2 * s)


def test_frechet_gaussians_matches_closed_forms():
    mu1, mu2 = np.array([1.0, -2.0, 0.5]), np.array([0.0, 1.0, 0.5])
    v1, v2 = np.array([4.0, 1.0, 0.25]), np.array([1.0, 9.0, 0.25])
    # Diagonal covariances: |mu1 - mu2|² + Σ (σ1 − σ2)².
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet.frechet_gaussians(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)
    # Non-commuting 2×2 covariances: tr((A B)^½) = tr((A^½ B A^½)^½), each root in closed form.
    a, b = np.array([[2.0, 0.8], [0.8, 1.0]]), np.array([[1.0, -0.3], [-0.3, 3.0]])
    ra = _sqrt_2x2(a)
    expected = np.trace(a) + np.trace(b) - 2 * np.trace(_sqrt_2x2(ra @ b @ ra))
    assert frechet.frechet_gaussians(np.zeros(2), a, np.zeros(2), b) == pytest.approx(expected, rel=1e-10)
    assert frechet.frechet_gaussians(np.zeros(2), b, np.zeros(2), a) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_feature_sets():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 8))
    assert frechet.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # Rank-deficient covariance (fewer rows than dimensions) stays finite and zero against itself.
    few = rng.normal(size=(5, 20))
    assert frechet.frechet_distance(few, few) == pytest.approx(0.0, abs=1e-9)
    # A shift adds exactly its squared length.
    shift = np.arange(8, dtype=np.float64) / 10
    assert frechet.frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-9)
    with pytest.raises(ValueError, match="same D"):
        frechet.frechet_distance(a, a[:, :4])


def _dataset(folder: Path, n: int, size: tuple[int, int] = (16, 16)) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in rng.permutation(n):  # written out of order: the protocol sorts the names
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")
    return folder


def test_real_split_protocol_on_folder_and_zip(tmp_path):
    folder = _dataset(tmp_path / "data", 11)
    names = sorted(p.name for p in folder.iterdir())
    order = np.random.RandomState(0).permutation(len(names))
    ref, floor = real_sets.real_split(folder, n=4)
    assert ref == [names[i] for i in order[:4]] and floor == [names[i] for i in order[4:8]]
    assert not set(ref) & set(floor)
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as zf:
        for name in reversed(names):
            zf.write(folder / name, name)
    assert real_sets.real_split(tmp_path / "images.zip", n=4) == (ref, floor)
    assert [a.shape for a in real_sets.read_images(tmp_path / "images.zip", ref)] == [(16, 16, 3)] * 4
    key = real_sets.dataset_key
    assert key(folder, 4) == key(tmp_path / "images.zip", 4) != key(folder, 5)
    with pytest.raises(ValueError, match="need 12"):
        real_sets.real_split(folder, n=6)


def test_hog_features_and_person_rate():
    pytest.importorskip("cv2")
    imgs = [np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8) for i in range(3)]
    assert q.hog_features(imgs).shape == (3, 9 * 4 * 9)  # 3×3 blocks of 2×2 cells, 9 bins
    with pytest.raises(ValueError, match="multiples of 8"):
        q.hog_features([np.zeros((20, 20, 3), np.uint8)])
    blank = [np.full((256, 128, 3), 128, np.uint8), np.zeros((16, 8, 3), np.uint8)]  # the second: below the window
    assert q.person_rate(blank) == 0.0


def _tiny_network(path: Path, seed: int = 0) -> None:
    import torch

    from insetgan.networks import native
    from insetgan.networks.config import GeneratorConfig
    from insetgan.networks.generator import Generator

    torch.manual_seed(seed)
    cfg = GeneratorConfig(z_dim=32, w_dim=32, img_resolution=16, mapping_layers=2, channel_base=256, channel_max=32)
    native.save(Generator(cfg).eval().requires_grad_(False), path)


def _eval_run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EVAL_RUN), *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def test_eval_run_writes_quality_and_curve_once(tmp_path):
    data = _dataset(tmp_path / "data", 10)
    run = tmp_path / "run"
    run.mkdir()
    _tiny_network(run / "network-000004.safetensors")
    _tiny_network(run / "network-latest.safetensors")
    small = ["--kind", "face", "--data", data, "--samples", "4", "--fd-samples", "4"]
    proc = _eval_run(run, *small)
    assert proc.returncode == 0, proc.stderr
    row = json.loads((run / "quality-000004.json").read_text())
    for key in ("kimg", "face_rate", "fdd", "spread_w", "spread_4x4", "spread_8x8", "spread_16x16", "seconds"):
        assert key in row and math.isfinite(row[key]), (key, row)
    assert row["kimg"] == 4 and 0 <= row["face_rate"] <= 1 and row["fdd"] >= 0
    assert json.loads((run / "curve.json").read_text()) == [row]
    assert "| kimg | face_rate | fdd |" in (run / "curve.md").read_text()
    assert not (run / "quality-latest.json").exists() and len(list(run.glob("real-faces-*.npz"))) == 1

    before = (run / "quality-000004.json").stat().st_mtime_ns
    again = _eval_run(run, *small)
    assert again.returncode == 0 and "network-000004" not in again.stdout, again.stdout + again.stderr
    assert (run / "quality-000004.json").stat().st_mtime_ns == before

    (run / "network-000008.safetensors").write_bytes(b"\x00" * 100)  # a broken snapshot: warned and skipped
    broken = _eval_run(run, *small)
    assert broken.returncode == 1 and "warning: skipping network-000008.safetensors" in broken.stderr
    assert not (run / "quality-000008.json").exists()


@pytest.mark.parametrize("what", ["run", "data"])
def test_eval_run_missing_folder_is_a_one_line_error(tmp_path, what):
    data = _dataset(tmp_path / "data", 4)
    run = tmp_path / "run"
    run.mkdir()
    args = (tmp_path / "nope", data) if what == "run" else (run, tmp_path / "nope")
    proc = _eval_run(args[0], "--kind", "face", "--data", args[1])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert ("run folder" if what == "run" else "dataset") in lines[0] and "nope" in lines[0]


def test_dataset_face_prior_from_folder_zip_and_default(tmp_path):
    import json
    import zipfile

    from insetgan.errors import InsetganError
    from insetgan.method.boxes import FACE_PRIOR

    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "00000.png").write_bytes(b"")
    (folder / "dataset.json").write_text(json.dumps({"priors": {"face": [0.3, 0.05, 0.4, 0.2]}}))
    assert real_sets.dataset_face_prior(folder) == (0.3, 0.05, 0.4, 0.2)
    with zipfile.ZipFile(tmp_path / "inside.zip", "w") as zf:
        zf.writestr("00000.png", b"")
        zf.writestr("dataset.json", json.dumps({"priors": {"face": [0.1, 0.2, 0.3, 0.4]}}))
    assert real_sets.dataset_face_prior(tmp_path / "inside.zip") == (0.1, 0.2, 0.3, 0.4)
    with zipfile.ZipFile(folder / "images.zip", "w") as zf:
        zf.writestr("00000.png", b"")
    assert real_sets.dataset_face_prior(folder / "images.zip") == (0.3, 0.05, 0.4, 0.2)  # the dataset.json beside it
    (folder / "dataset.json").write_text(json.dumps({"priors": {"face": "none"}}))
    assert real_sets.dataset_face_prior(folder) == FACE_PRIOR
    (folder / "dataset.json").write_text("[" * 100_000)
    with pytest.raises(InsetganError):  # the bounded reader refuses it in one line
        real_sets.dataset_face_prior(folder)
