"""Fetch the public FineParser code that ``benchmarks/reference_eval.py`` measures, checked by sha256.

The files are fetched from GitHub at pinned commits into a git-ignored folder (default
``.ref/FineParser_CVPR2024``); they are a baseline to time, never part of hmtools. The public
repository imports two modules it does not hold (``models/PS_parts.py``, ``models/vit_decoder.py``);
they come from the same authors' earlier FineDiving repository, which FineParser builds on.

    python scripts/fetch_reference.py                 # then:
    pip install einops segmentation-models-pytorch
    PYTHONPATH=. python benchmarks/reference_eval.py --reference-dir .ref/FineParser_CVPR2024

Every file is downloaded to a temporary folder and checked (CRLF line ends are read as LF, so a
checkout with either line ending passes); the folder replaces the destination only when all
files pass. Exit 2 with one line on a failed download or checksum, leaving nothing behind.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import urllib.request
from pathlib import Path

FINEPARSER = ("PKU-ICST-MIPL/FineParser_CVPR2024", "492f09b0c0d8d5c96785a294f3194efd27a4a770")
FINEDIVING = ("xujinglin/FineDiving", "5aac8406dfbc64357639c4008eaa1fb2214ad2ef")

# (source, path, sha256 of the LF-ended text)
FILES = [
    (FINEPARSER, "tools/__init__.py", "a407c57e44fec6af02d0f9029b8c3ebe0f6c07624477685839e8983a027fcaaf"),
    (FINEPARSER, "tools/helper.py", "ac4662c82795de1c0b5920a9838cd32ba3a23e6db7f1d8479f9b319be270fde2"),
    (FINEPARSER, "utils/misc.py", "1ea8552fbadb186f08a65b794f059711f586c57d6a83222160af252fd2050a78"),
    (FINEPARSER, "models/__init__.py", "5967653a0a3f81a7a44b7fcfbc778da2f1926dba077f9b3b71f72ec644624549"),
    (FINEPARSER, "models/Backbone.py", "f573bfefbaca83cd9c99643878753a37417c4e2688aca1700d70f8067a973a1e"),
    (FINEPARSER, "models/i3d.py", "8689986b8d20d2674b8aa618c7d3ef689c915f896b75a9b163b84e6f0a63499a"),
    (FINEPARSER, "models/i3d_vos.py", "2fc774702e422fea74a8a1f57d095059e97f527e857cd81ff01a0ff55a730278"),
    (FINEPARSER, "models/mask.py", "de307fe8ee788b2fa0c75c1a1589ec8e6dc85110045cfe56317fac65f2218812"),
    (FINEPARSER, "models/PS.py", "f8883b0ebdf252c68acb912fc50396215d7639f9b68bf990d4374daa20513c6b"),
    (FINEPARSER, "models/MLP.py", "f042c100222c140df469aa95af4884e89d09ba93df5e7be187d4f550fb03728c"),
    (FINEDIVING, "models/PS_parts.py", "f4a1c9a1bd67bd807c6a1e6f9a9421c6877f03295ca7ac515a8188078e2fad15"),
    (FINEDIVING, "models/vit_decoder.py", "1060f81adcb4239e7e3cbc175437710c5f7b1dc39df91322bcb95a2e2d073afc"),
]


class FetchError(RuntimeError):
    """A file could not be downloaded or did not match its checksum."""


def fetch(dest: Path, base_url: str = "https://raw.githubusercontent.com", timeout: float = 60.0) -> None:
    """Download every file of ``FILES`` from ``base_url``/<owner>/<repo>/<commit>/<path>, check it, and
    put the set in ``dest`` (replacing what was there) only when all pass. Raises FetchError."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        stage = Path(tmp) / "tree"
        for (repo, commit), path, want in FILES:
            url = f"{base_url.rstrip('/')}/{repo}/{commit}/{path}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    body = resp.read().replace(b"\r\n", b"\n")
            except OSError as exc:
                raise FetchError(f"could not download {url}: {exc}; check the network or pass --base-url") from exc
            got = hashlib.sha256(body).hexdigest()
            if got != want:
                raise FetchError(f"{url}: sha256 {got}, expected {want}; the file changed upstream or in transit")
            (stage / path).parent.mkdir(parents=True, exist_ok=True)
            (stage / path).write_bytes(body)
        (stage / "utils" / "__init__.py").touch()  # the public repository has none
        if dest.exists():
            dest.rename(Path(tmp) / "previous")  # removed with the temporary folder
        stage.rename(dest)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dest", type=Path, default=Path(".ref/FineParser_CVPR2024"))
    ap.add_argument("--base-url", default="https://raw.githubusercontent.com", help="a mirror of GitHub's raw files")
    args = ap.parse_args(argv)
    try:
        fetch(args.dest, args.base_url)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"public FineParser code: {len(FILES)} files in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
