"""Packaging: insetgan.networks/insetgan.torch_utils never collide with an NVlabs checkout's own
top-level ``torch_utils`` and ``networks``, and setup.py installs every package folder.

The import tests run in a subprocess whose cwd is a folder of stand-ins and whose PYTHONPATH is
clear: in-process, pytest has put the repository root on sys.path, which would hide a collision.
scripts/check_install.sh does the same against a wheel installed into a fresh virtual environment.
"""
from __future__ import annotations

import ast
import fnmatch
import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from insetgan.torch_utils import custom_ops
from tests.conftest import REPO, fixture_path

IMG_TOL = dict(rtol=1e-4, atol=1e-4)
MAPPED = ("networks", "torch_utils")

# Run in the stand-in folder: imports in the order given by argv[1], loads the fixture pickle
# argv[2] (which names torch_utils.persistence), writes the psi=0.7 'const' image of the
# reference z argv[3] to img.npy and prints where each module came from.
CHILD = """
import importlib, json, sys
import numpy as np
import torch

order, ckpt_path, ref_path = sys.argv[1:]
standins = ["torch_utils", "torch_utils.persistence", "networks"]
ours = ["insetgan", "insetgan.torch_utils", "insetgan.networks", "insetgan.networks.checkpoints"]
mods = {name: importlib.import_module(name) for name in (standins + ours if order == "standins-first" else ours + standins)}
G = mods["insetgan.networks.checkpoints"].load_checkpoint(ckpt_path).generator
with torch.no_grad():
    img = G(torch.tensor(np.load(ref_path)["z"]), None, truncation_psi=0.7, noise_mode="const")
np.save("img.npy", img.numpy())
mods = {name: importlib.import_module(name) for name in standins + ours}  # as the caller would see them now
print(json.dumps({name: {"file": m.__file__, "standin": getattr(m, "STANDIN", None)} for name, m in mods.items()}))
"""


def clean_env() -> dict[str, str]:
    """The environment without PYTHONPATH, so only cwd and site-packages are on sys.path."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def make_standins(folder: Path) -> None:
    """A stand-in for an NVlabs checkout: a ``torch_utils`` package (with ``persistence``) and ``networks.py``."""
    (folder / "torch_utils").mkdir()
    (folder / "torch_utils" / "__init__.py").write_text('STANDIN = "torch_utils"\n')
    (folder / "torch_utils" / "persistence.py").write_text(
        'STANDIN = "torch_utils.persistence"\n\n'
        "def _reconstruct_persistent_obj(meta):\n"
        '    raise AssertionError("insetgan called the stand-in torch_utils.persistence")\n')
    (folder / "networks.py").write_text('STANDIN = "networks"\n')


def load_setup_py() -> ModuleType:
    """setup.py as a module, without running ``setup()`` (that only happens under ``__main__``)."""
    spec = importlib.util.spec_from_file_location("insetgan_setup", REPO / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("order", ["standins-first", "insetgan-first"])
def test_standin_torch_utils_and_networks_do_not_collide(tmp_path, order):
    ckpt, ref_path = fixture_path("sg2ada_face64.pkl"), fixture_path("sg2ada_face64_ref.npz")
    make_standins(tmp_path)
    proc = subprocess.run([sys.executable, "-c", CHILD, order, str(ckpt), str(ref_path)], cwd=tmp_path,
                          env=clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    mods = json.loads(proc.stdout.splitlines()[-1])
    for name in ("torch_utils", "torch_utils.persistence", "networks"):
        assert mods[name]["standin"] == name
        assert Path(mods[name]["file"]).is_relative_to(tmp_path), mods[name]["file"]
    assert Path(mods["insetgan.torch_utils"]["file"]) == REPO / "torch_utils" / "__init__.py"
    assert Path(mods["insetgan.networks"]["file"]) == REPO / "networks" / "__init__.py"
    assert mods["insetgan.torch_utils"]["standin"] is None and mods["insetgan.networks"]["standin"] is None
    img = np.load(tmp_path / "img.npy")
    np.testing.assert_allclose(img, np.load(ref_path)["img_psi07_const"], **IMG_TOL)


def test_installed_metadata_has_no_top_level_networks_or_torch_utils(tmp_path):
    # From tmp_path: in-process, the repository root (and its insetgan.egg-info, whose SOURCES.txt
    # lists repository paths) is on sys.path.
    probe = """
import importlib.metadata, importlib.util, json
dist = importlib.metadata.distribution("insetgan")
print(json.dumps({"top_level": (dist.read_text("top_level.txt") or "").split(),
                  "files": [str(f) for f in dist.files or []],
                  "found": [n for n in ("networks", "torch_utils") if importlib.util.find_spec(n) is not None]}))
"""
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=clean_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["top_level"] == ["insetgan"]
    assert info["files"] and not [f for f in info["files"] if f.split("/")[0] in MAPPED]
    assert info["found"] == []


def test_setup_py_lists_every_package_folder():
    packages = load_setup_py().find_all_packages()
    assert len(packages) == len(set(packages))
    on_disk = set()
    for root, prefix in [("insetgan", "insetgan"), *[(m, f"insetgan.{m}") for m in MAPPED]]:
        for folder in [REPO / root, *(p for p in (REPO / root).rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__" or not any(folder.glob("*.py")):
                continue  # data folders (assets/, csrc/) travel as package data
            assert (folder / "__init__.py").exists(), f"{folder} holds .py files but no __init__.py: not installed"
            on_disk.add(".".join([prefix, *folder.relative_to(REPO / root).parts]))
    assert set(packages) == on_disk


def _insetgan_imports(folder: str) -> dict[str, set[str]]:
    """Module path -> the ``insetgan...`` modules it imports (at any level), for every module under ``folder``."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            inside = {n for n in names if n.split(".")[0] == "insetgan"}
            found.setdefault(str(path.relative_to(REPO)), set()).update(inside)
    return found


def test_lower_layers_import_nothing_of_the_layers_above():
    """torch_utils imports only itself; networks only itself, torch_utils and the user-error type."""
    for path, names in _insetgan_imports("torch_utils").items():
        assert all(n.startswith("insetgan.torch_utils") for n in names), (path, names)
    allowed = ("insetgan.networks", "insetgan.torch_utils", "insetgan.errors")
    for path, names in _insetgan_imports("networks").items():
        assert all(n.startswith(allowed) for n in names), (path, names)


def test_every_kernel_source_is_built_and_packaged():
    """Each file in csrc/ belongs to a plugin (so it counts in the build's cache key) and travels in the wheel."""
    csrc = REPO / "torch_utils" / "ops" / "csrc"
    on_disk = sorted(p.name for p in csrc.iterdir())
    built = custom_ops.plugin_sources("cpu") + custom_ops.plugin_sources("cuda")
    assert sorted(built) == on_disk
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    packaged = [name for name in on_disk if any(fnmatch.fnmatch(f"csrc/{name}", g)
                                                for g in patterns["insetgan.torch_utils.ops"])]
    assert packaged == on_disk
    for device, ops in custom_ops.OP_SOURCES.items():  # one kernel file per op and device
        assert all(len(files) == 1 and files[0].startswith(op) for op, files in ops.items()), device
