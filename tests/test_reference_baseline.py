"""The public FineParser baseline's fetcher (scripts/fetch_reference.py) and benchmark harness
(benchmarks/reference_eval.py): downloads checked against a local server, clear failures, and,
where a copy of the public code lies beside the checkout, the harness timing it for real (slow)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from scripts.fetch_reference import FILES, FetchError, fetch

LOCAL_COPY = REPO / ".ref" / "FineParser_CVPR2024"


def _serve(root: Path, body_of) -> None:  # type: ignore[no-untyped-def]
    """Lay out every file of FILES under ``root`` as GitHub's raw URLs do, with ``body_of(path)``."""
    for (repo, commit), path, _ in FILES:
        f = root / repo / commit / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(body_of(path))


def test_tampered_file_fails_and_leaves_nothing(http_root, tmp_path: Path) -> None:
    root, url = http_root
    _serve(root, lambda path: b"print('not the public code')\n")
    dest = tmp_path / "ref" / "FineParser"
    with pytest.raises(FetchError, match="sha256 .*expected"):
        fetch(dest, url)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no staging folder left behind


def test_missing_file_is_one_clear_error(http_root, tmp_path: Path) -> None:
    _, url = http_root
    dest = tmp_path / "FineParser"
    with pytest.raises(FetchError, match="could not download .*tools/__init__.py"):
        fetch(dest, url)
    assert not dest.exists()


def test_fetch_cli_exit_code_2(http_root, tmp_path: Path) -> None:
    _, url = http_root
    r = subprocess.run(
        [sys.executable, "scripts/fetch_reference.py", "--dest", str(tmp_path / "x"), "--base-url", url],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: could not download")


def test_file_url_mirror_is_read_and_checked(tmp_path: Path) -> None:
    """A folder laid out as GitHub's raw URLs works as --base-url file:///... (a machine without
    internet), with the same checksum refusal."""
    mirror = tmp_path / "mirror"
    _serve(mirror, lambda path: b"# a different file\n")
    dest = tmp_path / "FineParser"
    with pytest.raises(FetchError, match=r"file://.*tools/__init__\.py: sha256 .*expected"):
        fetch(dest, mirror.as_uri())
    assert not dest.exists()


@pytest.mark.skipif(not LOCAL_COPY.is_dir(), reason="no copy of the public FineParser code in .ref/")
def test_fetch_reproduces_the_checked_copy_with_either_line_ending(http_root, tmp_path: Path) -> None:
    root, url = http_root
    _serve(root, lambda path: (LOCAL_COPY / path).read_bytes().replace(b"\n", b"\r\n"))  # a CRLF checkout
    dest = tmp_path / "FineParser"
    dest.mkdir()
    (dest / "stale.py").write_text("old")  # replaced as a whole
    fetch(dest, url)
    for _, path, _ in FILES:
        assert (dest / path).read_bytes() == (LOCAL_COPY / path).read_bytes()
    assert not (dest / "stale.py").exists()
    assert (dest / "utils" / "__init__.py").is_file()


def test_harness_rejects_a_folder_without_the_public_code(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "benchmarks/reference_eval.py", "--reference-dir", str(tmp_path), "--device", "cpu"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "expected a copy of the public FineParser code" in r.stderr


@pytest.mark.slow
@pytest.mark.skipif(not LOCAL_COPY.is_dir(), reason="no copy of the public FineParser code in .ref/")
def test_harness_times_the_public_code_and_ours() -> None:
    """One query of the public evaluation at the paper shapes (about a minute on 2 CPU cores)."""
    site = REPO / ".ref" / "site"  # where einops / segmentation-models-pytorch may be installed aside
    path = os.pathsep.join(str(p) for p in (REPO, site) if p.is_dir())
    r = subprocess.run(
        [sys.executable, "-W", "ignore", "benchmarks/reference_eval.py", "--reference-dir", str(LOCAL_COPY),
         "--device", "cpu", "--ref-queries", "1", "--queries", "2", "--eval-batch", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "51.76 M parameters" in r.stdout  # the public model as its builder makes it
    assert "eval: ours / public = " in r.stdout
