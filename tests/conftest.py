"""Shared test fixtures: locations of ../shared and small helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INSETGAN_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"


def fixture_path(name: str) -> Path:
    """Path of a file in ../shared/fixtures; skips the test when the folder is absent."""
    path = FIXTURES / name
    if not path.exists() and os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{path} not found: under CI (CI=true) the shared folder must be beside the checkout")
    if not path.exists():
        pytest.skip(f"{path} not found (set INSETGAN_SHARED to the shared folder)")
    return path
