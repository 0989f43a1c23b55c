#!/usr/bin/env python3
"""Copy a trained encoder file as a shipped one: float16 tensors (half the size), the same metadata.

    python scripts/package_encoder.py runs-encoder/face/encoder-latest.safetensors \\
        insetgan/assets/models/face-encoder.safetensors

The copy keeps the generator hash, the config and the training entries (kimg, quality numbers)
of the source and adds ``packaged_from`` (the source file's SHA-256). It is refused when the
float16 copy encodes a batch of random images more than 1e-2 (max abs W+ difference) away from
the source.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from insetgan import io as iio
from insetgan.networks.encoder_files import ENCODER_FORMAT, read_encoder, save_encoder

RESERVED = ("format", "format_version", "config", "generator_sha256")
TOLERANCE = 1e-2


def main() -> None:
    """Read, write float16, check the copy against the source."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    args = ap.parse_args()
    encoder, meta = read_encoder(args.src)
    assert meta["format"] == ENCODER_FORMAT
    extra = {k: v for k, v in meta.items() if k not in RESERVED and k != "packaged_from"}
    extra["packaged_from"] = iio.sha256(args.src)
    save_encoder(encoder, args.dst, meta["generator_sha256"], extra, dtype=torch.float16)
    copy, _ = read_encoder(args.dst)
    x = torch.rand(4, 3, encoder.cfg.input_height, encoder.cfg.input_width,
                   generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        diff = float((encoder(x) - copy(x)).abs().max())
    if diff > TOLERANCE:
        args.dst.unlink()
        raise SystemExit(f"the float16 copy differs by {diff:.3g} (> {TOLERANCE}); not written")
    print(f"wrote {args.dst} ({args.dst.stat().st_size / 2**20:.1f} MB, max W+ difference {diff:.2e})")


if __name__ == "__main__":
    main()
