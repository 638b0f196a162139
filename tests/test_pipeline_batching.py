"""OOM back-off of batched GPU work, and verified weight downloads from a local HTTP server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from hmtools.errors import HMToolsError  # noqa: E402
from pipelines.batching import BatchSize, run_batched  # noqa: E402
from pipelines.weights import download_verified  # noqa: E402


class FakeEncoder:
    """Raises CUDA out-of-memory above ``limit`` items per call, like a too-large batch."""

    def __init__(self, limit: int) -> None:
        self.limit, self.calls = limit, []

    def __call__(self, chunk):
        self.calls.append(len(chunk))
        if len(chunk) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in chunk]


def test_batch_halves_on_oom_and_keeps_going() -> None:
    enc, size = FakeEncoder(limit=3), BatchSize(16)
    out = run_batched(enc, list(range(11)), size)
    assert out == [x * 10 for x in range(11)]
    assert size.value == 2 and size.shrinks == 3
    assert enc.calls[:4] == [11, 8, 4, 2]  # 16 -> 8 -> 4 -> 2, then steady at 2
    assert all(c <= 2 for c in enc.calls[4:])


def test_oom_at_batch_one_is_raised() -> None:
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_batched(FakeEncoder(limit=0), [1, 2], BatchSize(4))


def test_other_errors_are_not_swallowed() -> None:
    def boom(chunk):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_batched(boom, [1], BatchSize(4))


def test_download_verifies_checksum_and_caches(http_root, tmp_path: Path) -> None:
    root, url = http_root
    body = b"fake weights " * 100_000
    (root / "w.pth").write_bytes(body)
    dest = tmp_path / "cache" / "w.pth"
    got = download_verified(url + "w.pth", dest, hashlib.sha256(body).hexdigest())
    assert got == dest and dest.read_bytes() == body
    (root / "w.pth").unlink()  # a second call must not download again
    assert download_verified(url + "w.pth", dest, hashlib.sha256(body).hexdigest()) == dest


def test_checksum_mismatch_leaves_no_file(http_root, tmp_path: Path) -> None:
    root, url = http_root
    (root / "w.pth").write_bytes(b"tampered")
    dest = tmp_path / "cache" / "w.pth"
    with pytest.raises(HMToolsError, match="expected 00"):
        download_verified(url + "w.pth", dest, "00" * 32)
    assert list(dest.parent.iterdir()) == []


def test_missing_url_is_one_clear_error(http_root, tmp_path: Path) -> None:
    _, url = http_root
    with pytest.raises(HMToolsError, match="could not download"):
        download_verified(url + "absent.pth", tmp_path / "w.pth", "00" * 32)
    assert not any(tmp_path.glob("w.pth*"))
