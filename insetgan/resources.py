"""Where the files shipped inside the package live (built-in models, LPIPS heads, identity weights)."""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
