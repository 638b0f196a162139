"""Dataset commands: ``inspect`` and ``extract-frames``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

DatasetOpt = Annotated[str, typer.Option("--dataset", help="Dataset adapter: finediving, mtl-aqa or aqa7.")]
RootOpt = Annotated[Path, typer.Option("--root", help="Dataset root folder.")]
AnnotationsOpt = Annotated[
    Path | None,
    typer.Option("--annotations", help="Folder of the annotation files (default: where the dataset keeps them)."),
]
ScaleOpt = Annotated[
    str,
    typer.Option(
        "--score-scale",
        help="AQA-7 only: 'auto' detects whether the split files hold scores x100 (the public "
        "C3D-LSTM copies) and says so; '1' or '100' states it.",
    ),
]


def inspect(
    dataset: DatasetOpt,
    root: RootOpt,
    annotations: AnnotationsOpt = None,
    score_scale: ScaleOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any problem is found.")] = False,
) -> None:
    """Report a dataset's samples, splits, classes, score ranges, frames found and problems."""
    from hmtools.datasets import load_dataset
    from hmtools.datasets.report import summarize
    from hmtools.errors import InputError

    is_aqa7 = dataset.replace("_", "-").lower() == "aqa7"
    if not is_aqa7 and score_scale != "auto":
        raise InputError("--score-scale applies to --dataset aqa7 only")
    options = {"score_scale": score_scale} if is_aqa7 else {}
    index = load_dataset(dataset, root, annotations, **options)
    report = summarize(index)
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
    else:
        for line in report_lines(report, index.notes):
            typer.echo(line)
    if strict and report["problems"]:
        raise typer.Exit(1)


def report_lines(report: dict, notes: list[str]) -> list[str]:  # type: ignore[type-arg]
    """Human-readable form of the ``inspect`` report."""
    splits = ", ".join(f"{k} {v}" for k, v in report["splits"].items())
    lines = [
        f"{report['dataset']} at {report['root']}: {report['samples']} samples ({splits}), "
        f"{report['frames_found']} frames found",
    ]
    for name, info in report.get("classes", {}).items():
        lines.append(f"  class {name}: {info['samples']} samples, score {info['score_min']}-{info['score_max']}")
    if report.get("score_range"):
        lo, hi = report["score_range"]
        lines.append(f"  scores {lo}-{hi}")
    lines += [f"  note: {n}" for n in notes]
    kinds: dict[str, int] = {}
    for p in report["problems"]:
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
    lines += [f"  problem {k}: {n} found" for k, n in sorted(kinds.items())]
    lines += [f"    {p['sample_id']}: {p['detail']}" for p in report["problems"][:20]]
    if len(report["problems"]) > 20:
        lines.append(f"    ... {len(report['problems']) - 20} more (use --json for all)")
    return lines


def extract_frames(
    root: Annotated[Path | None, typer.Option("--root", help="Dataset root (with --dataset).")] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Extract every sample video of this dataset.")
    ] = None,
    video: Annotated[Path | None, typer.Option("--video", help="One video file to extract.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Frame folder for --video.")] = None,
    pattern: Annotated[str, typer.Option("--pattern", help="File name pattern for --video frames.")] = "%05d.jpg",
    start: Annotated[
        int, typer.Option("--start", help="Number of the first frame file for --video (1 as ffmpeg numbers them).")
    ] = 1,
) -> None:
    """Decode videos into frame folders in the dataset's naming (resumable)."""
    from hmtools.errors import InputError
    from hmtools.frames import extract_dataset_frames, extract_video_frames

    if dataset is not None and (video is not None or out is not None):
        raise InputError("pass either --dataset NAME --root DIR or --video FILE --out DIR, not both")
    if dataset is not None and (pattern != "%05d.jpg" or start != 1):
        raise InputError("--pattern and --start apply to --video only: a dataset's layout fixes its file names")
    if dataset is not None and root is not None:
        n = extract_dataset_frames(dataset, root)
    elif video is not None and out is not None:
        n = extract_video_frames(video, out, pattern=pattern, start=start)
    else:
        raise InputError("pass --dataset NAME --root DIR, or --video FILE --out DIR")
    typer.echo(f"{n} frames written")
