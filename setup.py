"""Package discovery only (metadata lives in pyproject.toml).

setuptools' automatic discovery cannot map the repository's top-level ``networks/`` and
``torch_utils/`` folders into the ``insetgan`` namespace, so the packages under each root are
found here and prefixed; nothing is listed by hand. ``find_all_packages`` is importable without
side effects (tests/test_packaging.py checks it against the folders on disk); ``setup()`` runs
only when setuptools executes this file, which it does with ``__name__ == "__main__"``.
"""
from pathlib import Path

from setuptools import find_packages, setup

MAPPED = ("networks", "torch_utils")  # repository folder -> insetgan.<folder> (see pyproject's package-dir)


def find_all_packages(root: Path = Path(__file__).resolve().parent) -> list[str]:
    """Every package to install, as dotted names under ``insetgan`` (``networks.x`` -> ``insetgan.networks.x``)."""
    packages = find_packages(where=str(root), include=["insetgan", "insetgan.*"])
    for folder in MAPPED:
        packages += [f"insetgan.{p}" for p in find_packages(where=str(root), include=[folder, f"{folder}.*"])]
    return packages


if __name__ == "__main__":
    setup(packages=find_all_packages())
