#!/usr/bin/env python3
"""Pack a prepared dataset into one compact zip (JPEG images + dataset.json) to carry to another machine.

The GPU machine receives at most 64 MiB per call; prepared PNG datasets are larger. The packed
zip holds the images re-encoded as JPEG (default quality 95, 4:4:4 chroma) in the same order
and the dataset's ``dataset.json`` (per-image records dropped unless ``--records``), and
``insetgan train --data PACKED.zip`` reads it directly.

    python scripts/pack_dataset.py data/faces64 data/faces64.zip
    python scripts/pack_dataset.py data/bodies256 data/bodies256.zip --quality 92
"""
from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from insetgan.io import atomic_write_bytes
from insetgan.train.data import load_dataset


def pack(src: Path, dst: Path, quality: int, records: bool) -> tuple[int, int]:
    """Write ``dst``; returns (images, bytes)."""
    data = load_dataset(src)
    meta = dict(data.meta)
    if not records:
        meta.pop("records", None)
        meta.pop("skipped", None)
    meta["packed"] = {"format": "jpeg", "quality": quality, "from": str(src)}

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for i, img in enumerate(data.images):
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(img.permute(1, 2, 0).numpy())).save(
                buf, "JPEG", quality=quality, subsampling=0)
            zf.writestr(zipfile.ZipInfo(f"{i:05d}.jpg", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
        zf.writestr(zipfile.ZipInfo("dataset.json", date_time=(1980, 1, 1, 0, 0, 0)), json.dumps(meta, indent=1))
    atomic_write_bytes(dst, archive.getvalue())
    return data.images.shape[0], dst.stat().st_size


def main() -> None:
    """Parse arguments and pack."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="Prepared dataset folder (or zip).")
    ap.add_argument("dst", type=Path, help="Output .zip")
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--records", action="store_true", help="Keep the per-image records in dataset.json.")
    args = ap.parse_args()
    n, size = pack(args.src, args.dst, args.quality, args.records)
    print(f"packed {n} images into {args.dst} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
