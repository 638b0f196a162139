"""Project-wide rules from docs/style: light `import hmtools`, heavy imports in their stage modules,
module size, no registries."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO

PACKAGES = ("hmtools", "pipelines", "annotator_app", "uni_fineparser")
# heavy package -> the only places allowed to import it (prefixes of repo-relative paths)
ALLOWED_IMPORTERS = {
    "ultralytics": ("pipelines/detect.py",),
    "segment_anything": (
        "pipelines/segment.py",
        "pipelines/segment_tiny.py",
        "pipelines/propagate.py",
        "pipelines/sam_",
    ),
    "gradio": ("annotator_app/",),
    "mediapipe": ("pipelines/lite.py",),
}


def _python_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True)
    files = [f for f in out.stdout.split() if f.split("/")[0] in PACKAGES]
    return files or [str(p.relative_to(REPO)) for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]


def test_import_hmtools_stays_light() -> None:
    code = (
        "import sys, hmtools, hmtools.cli, hmtools.store, hmtools.masks, hmtools.datasets; "
        "heavy = [m for m in ('torch', 'gradio', 'ultralytics', 'segment_anything', 'mediapipe') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import hmtools pulled in: {out.stdout.strip()}"


def test_heavy_packages_imported_only_in_their_stage_modules() -> None:
    offenders = []
    for rel in _python_files():
        text = (REPO / rel).read_text(encoding="utf-8")
        for pkg, allowed in ALLOWED_IMPORTERS.items():
            if re.search(rf"^\s*(import|from)\s+{pkg}\b", text, re.M) and not rel.startswith(allowed):
                offenders.append(f"{rel} imports {pkg}")
    assert not offenders, offenders


def test_modules_stay_under_400_lines() -> None:
    long = []
    for rel in _python_files():
        n = len((REPO / rel).read_text(encoding="utf-8").splitlines())
        if n > 400:
            long.append(f"{rel}: {n}")
    assert not long, long


def test_no_registries_or_globals() -> None:
    bad = []
    for rel in _python_files():
        text = (REPO / rel).read_text(encoding="utf-8")
        if re.search(r"register_module|Registry\(|^\s*global\s", text, re.M):
            bad.append(rel)
    assert not bad, bad
