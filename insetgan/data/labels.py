"""What the label maps give: the label indices of footwear and head, a photo's label map, the
connected components of a mask and the two shoes of a label map (ccp-style human parsing maps).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from insetgan.errors import InsetganError
from insetgan.images import ImageTooLargeError, read_label_map

log = logging.getLogger(__name__)

FOOTWEAR_NAMES = ("boots", "clogs", "flats", "heels", "loafers", "pumps", "sandals", "shoes", "sneakers", "wedges")
HEAD_NAMES = ("hair", "skin", "hat", "glasses", "sunglasses")
# ccp indices, used when no label_names.txt is found next to the label maps.
DEFAULT_LABELS = {"boots": 7, "clogs": 12, "flats": 16, "heels": 21, "loafers": 28, "pumps": 32, "sandals": 36,
                  "shoes": 39, "sneakers": 43, "wedges": 58, "hair": 19, "skin": 41, "hat": 20, "glasses": 17,
                  "sunglasses": 47}
XYWH = tuple[float, float, float, float]


@dataclass(frozen=True)
class LabelSet:
    """Label indices of interest, from ``label_names.txt`` (index → name, one per line) next to the label maps."""

    footwear: tuple[int, ...]
    head: tuple[int, ...]
    source: str

    @classmethod
    def load(cls, labels_dir: str | Path) -> "LabelSet":
        """Read ``label_names.txt`` from ``labels_dir`` or its parent; the ccp indices when there is none."""
        for cand in (Path(labels_dir) / "label_names.txt", Path(labels_dir).parent / "label_names.txt"):
            if cand.is_file():
                names = {n.strip().lower(): i for i, n in enumerate(cand.read_text().splitlines()) if n.strip()}
                missing = [n for n in FOOTWEAR_NAMES if n not in names]
                if len(missing) == len(FOOTWEAR_NAMES):
                    raise InsetganError(f"{cand} names no footwear label ({', '.join(FOOTWEAR_NAMES)})")
                return cls(tuple(names[n] for n in FOOTWEAR_NAMES if n in names),
                           tuple(names[n] for n in HEAD_NAMES if n in names), str(cand.resolve()))
        log.warning("no label_names.txt found for %s; using the ccp label indices", labels_dir)
        return cls(tuple(DEFAULT_LABELS[n] for n in FOOTWEAR_NAMES), tuple(DEFAULT_LABELS[n] for n in HEAD_NAMES),
                   "ccp defaults")


def load_label_map(labels_dir: str | Path | None, stem: str, size: tuple[int, int]) -> np.ndarray | None:
    """The label map ``labels_dir/stem.png`` as [H, W] indices, or ``None`` when absent, unreadable or mis-sized.

    A label map over the pixel limit is an error (:class:`~insetgan.images.ImageTooLargeError`), not a skip.
    """
    if labels_dir is None:
        return None
    path = Path(labels_dir) / f"{stem}.png"
    if not path.is_file():
        return None
    try:
        arr = read_label_map(path)
    except ImageTooLargeError:
        raise
    except InsetganError as exc:
        log.warning("ignoring the label map: %s", exc)
        return None
    if arr.ndim != 2 or arr.shape[::-1] != tuple(size):
        log.warning("ignoring label map %s: %s does not match the photo's %dx%d", path, arr.shape, *size)
        return None
    return arr


@dataclass(frozen=True)
class Component:
    """A connected pixel region: bounding box ``[x0, x1) × [y0, y1)`` and pixel count."""

    x0: int
    y0: int
    x1: int
    y1: int
    pixels: int

    @property
    def xywh(self) -> XYWH:
        """Bounding box as ``(x, y, w, h)``."""
        return float(self.x0), float(self.y0), float(self.x1 - self.x0), float(self.y1 - self.y0)


def connected_components(mask: np.ndarray) -> list[Component]:
    """8-connected components of a 2-D boolean mask (row runs joined by union-find), in scan order."""
    m = np.asarray(mask, dtype=bool)
    runs: list[tuple[int, int, int]] = []  # (row, start, stop)
    parent: list[int] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    prev: list[int] = []
    prev_row = -2
    for y in np.flatnonzero(m.any(axis=1)):
        d = np.diff(np.concatenate(([0], m[y].astype(np.int8), [0])))
        cur = []
        for s, e in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
            i = len(runs)
            runs.append((int(y), int(s), int(e)))
            parent.append(i)
            cur.append(i)
            for j in prev if prev_row == y - 1 else ():
                if runs[j][1] <= e and runs[j][2] >= s:  # touching, diagonals included
                    a, b = find(i), find(j)
                    parent[max(a, b)] = min(a, b)
        prev, prev_row = cur, int(y)
    groups: dict[int, list[tuple[int, int, int]]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(find(i), []).append(run)
    return [Component(min(r[1] for r in g), g[0][0], max(r[2] for r in g), g[-1][0] + 1,
                      sum(r[2] - r[1] for r in g)) for _, g in sorted(groups.items())]


def shoe_components(labels: np.ndarray, footwear: Iterable[int], min_px: int = 6) -> list[tuple[str, Component]]:
    """The shoes of a label map as ``[("left", c), ("right", c)]`` (image left first), or ``[]``.

    The two largest footwear components whose bounding box has a side >= ``min_px``; a single
    component (feet together, as in about a third of the ccp label maps) is split at its
    narrowest column within the middle half of its width.
    """
    mask = np.isin(labels, list(footwear))
    comps = [c for c in connected_components(mask) if max(c.x1 - c.x0, c.y1 - c.y0) >= min_px]
    comps = sorted(comps, key=lambda c: (-c.pixels, c.y0, c.x0))[:2]
    if len(comps) == 1 and comps[0].x1 - comps[0].x0 >= 2:
        c = comps[0]
        sub = mask[c.y0:c.y1, c.x0:c.x1]
        w = c.x1 - c.x0
        lo = max(1, w // 4)
        cut = lo + int(np.argmin(sub.sum(0)[lo:max(lo + 1, w - w // 4)]))
        comps = []
        for part, dx in ((sub[:, :cut], 0), (sub[:, cut:], cut)):
            ys, xs = np.nonzero(part)
            comps.append(Component(c.x0 + dx + int(xs.min()), c.y0 + int(ys.min()), c.x0 + dx + int(xs.max()) + 1,
                                   c.y0 + int(ys.max()) + 1, int(part.sum())))
    return list(zip(("left", "right"), sorted(comps, key=lambda c: c.x0 + c.x1)))
