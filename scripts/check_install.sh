#!/usr/bin/env bash
# Install check: build a wheel of this checkout (no build isolation, no network), install it
# (not editable) into a fresh virtual environment, and run the CLI from a folder that has its
# own torch_utils/ package and networks.py module, as NVlabs checkouts do. Neither may shadow
# the other: the stand-ins stay importable as `torch_utils`/`networks`, and insetgan uses its
# own insetgan.torch_utils/insetgan.networks from the fresh site-packages.
#
# Environment: PYTHON (base interpreter for the fresh venv, default python3), BUILD_PYTHON
# (interpreter that builds the wheel; needs setuptools>=69; default .venv/bin/python),
# SHARED (the shared folder with fixtures/, default ../shared relative to the repository root;
# when it is missing the generate check is skipped, or fails under CI=true).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python3}
BUILD_PYTHON=${BUILD_PYTHON:-$REPO/.venv/bin/python}
SHARED=${SHARED:-../shared}
[[ $SHARED = /* ]] || SHARED=$REPO/$SHARED
FIXTURE=sg2ada_face64  # NVIDIA pickle: it names torch_utils.persistence, which the stand-in also provides
if [[ ! -f $SHARED/fixtures/$FIXTURE.pkl && ${CI:-} == true ]]; then
    echo "FAIL: $SHARED/fixtures/$FIXTURE.pkl not found (CI=true needs the shared fixtures)" >&2
    exit 1
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# 1. Wheel. Built from a copy of the checkout's files (tracked and untracked-but-not-ignored),
#    so a stale build/ or *.egg-info cannot leak into it and the repository stays untouched.
mkdir -p "$TMP/src" "$TMP/dist"
git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do if [[ -e $f ]]; then printf '%s\0' "$f"; fi; done \
    | tar --null -T - -cf - | tar -xf - -C "$TMP/src"
"$BUILD_PYTHON" -m pip wheel -q --no-deps --no-build-isolation --no-index "$TMP/src" -w "$TMP/dist"
WHEEL=$(ls "$TMP"/dist/insetgan-*.whl)
ok "built $(basename "$WHEEL")"

"$BUILD_PYTHON" - "$WHEEL" "$TMP/src/torch_utils/ops/csrc" <<'EOF'
import fnmatch
import sys
import zipfile
from pathlib import Path

names = zipfile.ZipFile(sys.argv[1]).namelist()
top = sorted({n.split("/")[0] for n in names if n.split("/")[0] in ("networks", "torch_utils")})
assert not top, f"wheel has top-level {top}"
for pattern in ("insetgan/assets/models/*.safetensors", "insetgan/networks/__init__.py",
                "insetgan/torch_utils/__init__.py"):
    assert fnmatch.filter(names, pattern), f"wheel lacks {pattern}"
sources = sorted(p.name for p in Path(sys.argv[2]).iterdir())
missing = [s for s in sources if f"insetgan/torch_utils/ops/csrc/{s}" not in names]
assert sources and not missing, f"wheel lacks the kernel sources {missing}"
EOF
ok "wheel has no top-level networks/ or torch_utils/; has every csrc/ source and assets/models/*.safetensors"

# 2. Fresh virtual environment with the CPU torch, then the wheel (its other dependencies from the index).
"$PYTHON" -m venv "$TMP/venv"
VPY=$TMP/venv/bin/python
"$VPY" -m pip install -q torch==2.13.0
"$VPY" -m pip install -q "$WHEEL"
ok "installed the wheel into a fresh venv"

# 3. A folder with stand-ins for an NVlabs checkout's torch_utils/ package and networks.py.
WORK=$TMP/work
mkdir -p "$WORK/torch_utils"
cat > "$WORK/torch_utils/__init__.py" <<'EOF'
STANDIN = "torch_utils stand-in"
EOF
cat > "$WORK/torch_utils/persistence.py" <<'EOF'
def _reconstruct_persistent_obj(meta):
    raise AssertionError("insetgan called the stand-in torch_utils.persistence")
EOF
cat > "$WORK/networks.py" <<'EOF'
STANDIN = "networks stand-in"
EOF
cd "$WORK"
unset PYTHONPATH
# The console script's sys.path[0] is venv/bin, so put the folder on the path as a user of such a checkout would.
insetgan() { PYTHONPATH="$WORK" "$TMP/venv/bin/insetgan" "$@"; }

insetgan --help > help.txt || fail "insetgan --help"
grep -q "generate" help.txt || fail "insetgan --help does not list generate"
ok "insetgan --help"

insetgan doctor || fail "insetgan doctor"
insetgan doctor --json > doctor.json || fail "insetgan doctor --json"
"$VPY" -c 'import json, sys; cpu = json.load(open("doctor.json"))["devices"]["cpu"]; sys.exit(cpu["active"] != "cpp")' \
    || fail "insetgan doctor: the C++ CPU ops did not build from the installed sources"
ok "insetgan doctor: the C++ CPU ops of the installed package are active"

# 4. insetgan generate against the fixture reference (seeds 0-3, psi 0.7, noise const).
if [[ -f $SHARED/fixtures/$FIXTURE.pkl ]]; then
    insetgan --quiet generate --network "$SHARED/fixtures/$FIXTURE.pkl" --seeds 0-3 --trunc 0.7 \
        --noise-mode const --outdir out || fail "insetgan generate"
    "$VPY" - "$SHARED/fixtures/${FIXTURE}_ref.npz" <<'EOF'
import sys

import numpy as np
from PIL import Image

ref = np.load(sys.argv[1])
for row, seed in enumerate(ref["seeds"]):
    png = np.asarray(Image.open(f"out/seed{seed:04d}.png")).astype(int)
    expected = np.clip(ref["img_psi07_const"][row] * 127.5 + 128, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    diff = np.abs(png - expected.astype(int)).max()  # <= 1: float32 differences may flip a uint8 truncation
    assert png.shape == expected.shape and diff <= 1, f"seed {seed}: max pixel difference {diff}"
EOF
    ok "insetgan generate matches ${FIXTURE}_ref.npz (img_psi07_const, seeds 0-3, within 1/255)"
else
    echo "skip: insetgan generate ($SHARED/fixtures/$FIXTURE.pkl not found; set SHARED)"
fi

# 5. Imports in this folder, in both orders: stand-ins stay stand-ins, insetgan's come from the fresh venv.
for order in insetgan-first standins-first; do
    "$VPY" - "$order" "$REPO" <<'EOF' || fail "imports ($order)"
import importlib
import sys
import sysconfig
from pathlib import Path

order, repo = sys.argv[1], Path(sys.argv[2])
names = ["insetgan", "insetgan.networks", "insetgan.torch_utils", "insetgan.networks.checkpoints",
         "torch_utils", "torch_utils.persistence", "networks"]
if order == "standins-first":
    names = names[4:] + names[:4]
mods = {name: importlib.import_module(name) for name in names}
assert mods["torch_utils"].STANDIN == "torch_utils stand-in" and mods["networks"].STANDIN == "networks stand-in"
assert Path(mods["torch_utils"].__file__).parent.parent == Path.cwd(), mods["torch_utils"].__file__
site = Path(sysconfig.get_paths()["purelib"]).resolve()
for name in ("insetgan", "insetgan.networks", "insetgan.torch_utils"):
    path = Path(mods[name].__file__).resolve()
    assert path.is_relative_to(site) and not path.is_relative_to(repo), f"{name} from {path}"
assert not hasattr(mods["insetgan.torch_utils"], "STANDIN") and not hasattr(mods["insetgan.networks"], "STANDIN")
EOF
    ok "imports ($order): torch_utils and networks are the stand-ins; insetgan.networks and insetgan.torch_utils in the fresh site-packages"
done

echo "install check passed"
