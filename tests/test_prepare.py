"""Dataset preparation (insetgan.data): body crops with region priors, aligned faces, shoe crops, CLI."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import REPO, SHARED

pytest.importorskip("dlib")
from insetgan.data.labels import LabelSet, connected_components, shoe_components  # noqa: E402
from insetgan.data.prepare import BodiesConfig, FacesConfig, ShoesConfig  # noqa: E402
from insetgan.data.prepare import prepare_bodies, prepare_faces, prepare_shoes  # noqa: E402
from insetgan.data.windows import face_box_from_labels, face_box_from_landmarks, find_landmarks  # noqa: E402

DATA = SHARED / "data"
CCP = ["0001", "0002", "0003", "0004", "0006", "0009"]  # photos with label maps
if not (DATA / "ccp" / "labels").is_dir() or not (DATA / "aaf" / "faces").is_dir():
    pytest.skip(f"{DATA} not found (set INSETGAN_SHARED to the shared folder)", allow_module_level=True)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> dict[str, Path]:
    """6 labelled ccp photos + a truncated one; 6 aaf faces + a corrupt file + a noise image (no face)."""
    root = tmp_path_factory.mktemp("src")
    photos, faces = root / "photos", root / "faces"
    photos.mkdir(), faces.mkdir()
    for s in CCP:
        shutil.copy(DATA / "ccp" / "photos" / f"{s}.jpg", photos)
    (photos / "0005.jpg").write_bytes((DATA / "ccp" / "photos" / "0005.jpg").read_bytes()[:3000])  # truncated
    for name in sorted(p.name for p in (DATA / "aaf" / "faces").iterdir())[:600:100]:
        shutil.copy(DATA / "aaf" / "faces" / name, faces)
    (faces / "broken.jpg").write_bytes(b"not a jpeg")
    noise = (np.random.default_rng(0).random((120, 100, 3)) * 255).astype(np.uint8)
    Image.fromarray(noise).save(faces / "noise.png")
    return {"photos": photos, "faces": faces, "labels": DATA / "ccp" / "labels"}


@pytest.fixture(scope="module")
def bodies(src, tmp_path_factory) -> dict[str, Path]:
    """Bodies prepared into A (a smaller run first, then the full one over it) and into B."""
    root = tmp_path_factory.mktemp("bodies")
    prepare_bodies(src["photos"], root / "A", BodiesConfig(limit=3), labels=src["labels"])
    prepare_bodies(src["photos"], root / "A", BodiesConfig(), labels=src["labels"])
    prepare_bodies(src["photos"], root / "B", BodiesConfig(), labels=src["labels"])
    return {"A": root / "A", "B": root / "B"}


def inside(box: list[float], H: int, W: int) -> bool:
    x, y, w, h = box
    return w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W + 1e-6 and y + h <= H + 1e-6


def test_bodies_counts_sizes_boxes_and_priors(bodies):
    meta = json.loads((bodies["A"] / "dataset.json").read_text())
    H, W = 256, 128
    assert meta["kind"] == "bodies" and (meta["height"], meta["width"]) == (H, W)
    assert meta["counts"]["sources"] == 7 and meta["counts"]["written"] == 6
    assert meta["counts"]["skipped"] == {"unreadable": 1}
    assert meta["skipped"] == [{"source": "0005.jpg", "reason": "unreadable"}]
    assert meta["counts"]["centred_on"] == {"labels": 6}
    assert sum(meta["counts"]["face_from"].values()) == 6 and meta["counts"]["face_from"].get("dlib", 0) >= 4
    recs = meta["records"]
    assert [r["source"] for r in recs] == [f"{s}.jpg" for s in CCP]
    assert sorted(p.name for p in bodies["A"].glob("*.png")) == [f"{i:05d}.png" for i in range(6)]
    for r in recs:
        with Image.open(bodies["A"] / r["file"]) as im:
            assert im.size == (W, H) and im.mode == "RGB"
        assert inside(r["face"], H, W) and r["face"][1] + r["face"][3] / 2 < 0.25 * H
        assert len(r["shoes"]) == 2 and [s["side"] for s in r["shoes"]] == ["left", "right"]
        for s in r["shoes"] + [{"box": r["shoes_union"]}]:
            assert inside(s["box"], H, W) and s["box"][1] + s["box"][3] / 2 > 0.6 * H
    faces = np.array([r["face"] for r in recs]) / [W, H, W, H]
    shoes = np.array([r["shoes_union"] for r in recs]) / [W, H, W, H]
    np.testing.assert_allclose(meta["priors"]["face"], np.median(faces, 0), atol=6e-5)
    np.testing.assert_allclose(meta["priors"]["shoes"], np.median(shoes, 0), atol=6e-5)
    assert meta["priors"]["from"] == {"face": 6, "shoes": 6}


def test_bodies_deterministic_and_rerun_overwrites(bodies):
    a = sorted(p.name for p in bodies["A"].iterdir())
    assert a == sorted(p.name for p in bodies["B"].iterdir()) == [f"{i:05d}.png" for i in range(6)] + ["dataset.json"]
    for name in a:
        assert (bodies["A"] / name).read_bytes() == (bodies["B"] / name).read_bytes(), name


def test_bodies_cli_zip(src, bodies, tmp_path):
    out = tmp_path / "Z"
    shutil.copytree(bodies["A"], out)  # a folder run there before: its PNGs must go
    res = CliRunner().invoke(__import__("insetgan.cli", fromlist=["cli"]).cli,
                             ["--quiet", "prepare", "bodies", str(src["photos"]), "--labels", str(src["labels"]),
                              "--out", str(out), "--zip"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "images.zip"]
    with zipfile.ZipFile(out / "images.zip") as z:
        names = z.namelist()
        assert names == [f"{i:05d}.png" for i in range(6)]
        for n in names:
            assert z.read(n) == (bodies["A"] / n).read_bytes()
            assert Image.open(io.BytesIO(z.read(n))).size == (128, 256)
    zmeta, fmeta = (json.loads((d / "dataset.json").read_text()) for d in (out, bodies["A"]))
    assert zmeta.pop("output") == "images.zip" and fmeta.pop("output") == "png folder"
    assert zmeta == fmeta


def test_label_face_box_matches_dlib_roughly(src):
    photo = Image.open(src["photos"] / "0001.jpg").convert("RGB")
    labels = np.asarray(Image.open(src["labels"] / "0001.png"))
    from insetgan.inversion.align import LandmarkDetector
    lm = find_landmarks(photo, LandmarkDetector(), 4.0)
    a, b = face_box_from_landmarks(lm), face_box_from_labels(labels, LabelSet.load(src["labels"]).head)
    ix = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    assert ix * iy / (a.w * a.h + b.w * b.h - ix * iy) > 0.5


def test_faces_aligned_with_skip_reasons(src, tmp_path):
    meta = prepare_faces([src["faces"], src["photos"]], tmp_path / "F", FacesConfig(size=64, min_face=100))
    c = meta["counts"]
    assert c["sources"] == 15 and c["written"] == 6
    assert c["skipped"] == {"no_face": 1, "too_small": 6, "unreadable": 2}  # ccp faces are ~60-80 px quads
    reasons = {s["source"]: s["reason"] for s in meta["skipped"]}
    assert reasons["broken.jpg"] == "unreadable" and reasons["0005.jpg"] == "unreadable"
    assert reasons["noise.png"] == "no_face" and reasons["0001.jpg"] == "too_small"
    assert all(r["src"] == 0 and r["face_px"] >= 100 for r in meta["records"])
    for r in meta["records"]:
        with Image.open(tmp_path / "F" / r["file"]) as im:
            assert im.size == (64, 64)
    small = prepare_faces([src["photos"]], tmp_path / "G", FacesConfig(size=32, limit=2))
    assert small["counts"]["written"] == 2 and all(r["face_px"] >= 24 for r in small["records"])


def test_shoes_square_crops(src, tmp_path):
    meta = prepare_shoes(src["photos"], src["labels"], tmp_path / "S", ShoesConfig(size=32))
    assert meta["counts"]["written"] == 12 and meta["counts"]["skipped"] == {"unreadable": 1}
    assert [r["side"] for r in meta["records"]] == ["left", "right"] * 6
    for r in meta["records"]:
        x0, y0, x1, y1 = r["crop"]
        bx, by, bw, bh = r["box"]
        assert x1 - x0 == y1 - y0 >= max(bw, bh) and x0 <= bx and bx + bw <= x1 and y0 <= by and by + bh <= y1
        with Image.open(tmp_path / "S" / r["file"]) as im:
            assert im.size == (32, 32)


def test_components_and_left_right_split():
    m = np.zeros((10, 12), bool)
    m[1:3, 1:3] = True
    m[3, 3] = True  # diagonal neighbour: same component
    m[5:9, 6:11] = True
    comps = connected_components(m)
    assert [(c.x0, c.y0, c.x1, c.y1, c.pixels) for c in comps] == [(1, 1, 4, 4, 5), (6, 5, 11, 9, 20)]
    lab = np.zeros((20, 20), np.uint8)
    lab[10:16, 2:8] = lab[10:16, 9:15] = 39  # shoes, feet touching through one row
    lab[14, 8] = 39
    sides = shoe_components(lab, [39])
    assert [(s, c.x0, c.x1) for s, c in sides] == [("left", 2, 8), ("right", 8, 15)]
    lab[0, 0] = 39  # tiny fragments are ignored
    assert len(shoe_components(lab, [39], min_px=3)) == 2


def test_cli_one_line_errors(tmp_path):
    for args, msg, code in [(["bodies", tmp_path / "missing", "--out", tmp_path / "o"], "source folder not found", 1),
                            (["faces", tmp_path, "--out", tmp_path / "o"], "no images", 1),
                            (["shoes", tmp_path, "--labels", tmp_path, "--size", "4", "--out", tmp_path / "o"],
                             "--size", 2)]:  # an option out of its range is a usage error
        proc = subprocess.run([sys.executable, "-m", "insetgan", "prepare", *map(str, args)], capture_output=True,
                              text=True, cwd=REPO, timeout=120)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == code and len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
        assert msg in lines[0], lines[0]
