"""Package discovery only (metadata lives in pyproject.toml).

setuptools' automatic discovery cannot map the repository's top-level ``networks/`` and
``torch_utils/`` folders into the ``insetgan`` namespace, so the packages under each root are
found here and prefixed; nothing is listed by hand.
"""
from setuptools import find_packages, setup

MAPPED = ("networks", "torch_utils")  # repository folder -> insetgan.<folder> (see pyproject's package-dir)

packages = find_packages(include=["insetgan", "insetgan.*"])
for root in MAPPED:
    packages += [f"insetgan.{p}" for p in find_packages(include=[root, f"{root}.*"])]

setup(packages=packages)
