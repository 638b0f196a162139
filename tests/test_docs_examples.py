"""The documentation must be true: every command line, link, path and config key it shows.

Fast checks only (no model runs, no subprocess): each ``hmtools ...`` line in a fenced block of
README.md and docs/*.md is parsed by the real Click parser (options, types, required values);
each synopsis or inline ``hmtools CMD --opt`` names a real command and option; relative links and
their ``#anchors`` resolve; backticked repository paths (``tests/x.py::test_y`` included) exist;
the config tables of docs/training.md list exactly the dataclass fields with their defaults.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
from conftest import REPO

from hmtools.cli import _click_errors, app

DOCS = [REPO / "README.md", *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "cli.md")]
COMMANDS: dict[str, Any] = dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
USAGE_ERRORS = _click_errors()  # Typer vendors Click; its errors and Click's own
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SHELL_LANGS = {"", "bash", "sh", "console", "text", "shell"}
REPO_DIRS = ("hmtools", "pipelines", "annotator_app", "uni_fineparser", "benchmarks", "configs", "examples")
REPO_DIRS += ("scripts", "tests", "docs")


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in paths]


def _shell_commands(text: str) -> list[tuple[str, bool]]:
    """``(args after 'hmtools', is_synopsis)`` for every hmtools line in the shell-like fenced blocks.

    A synopsis line (``[--opt X]``, ``{a,b}`` or ``a|b`` placeholders) takes the indented option
    lines below it; a concrete line is split at ``&&`` and ``;`` and stripped of ``# comments``.
    """
    found: list[tuple[str, bool]] = []
    for m in FENCE.finditer(text):
        if m.group(1) not in SHELL_LANGS:
            continue
        lines = m.group(2).replace("\\\n", " ").splitlines()
        for i, line in enumerate(lines):
            code = re.split(r"\s#\s|^#", line)[0]
            if re.search(r"[\[{]|\w\|\w", code) and re.search(r"(?:^|\s)hmtools\s+[a-z]", code):
                more = []
                for nxt in lines[i + 1 :]:
                    if not nxt.startswith(" "):
                        break
                    more.append(nxt)
                found.append((" ".join([code.split("hmtools", 1)[1], *more]), True))
                continue
            for part in re.split(r"&&|;", code):
                hit = re.search(r"(?:^|\s|/)hmtools\s+([a-z].*)$", part.strip())
                if hit:
                    found.append((hit.group(1), False))
    return found


def _option_names(cmd: Any) -> set[str]:
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_every_command_line_parses_with_the_real_cli(doc: Path) -> None:
    problems = []
    for args, synopsis in _shell_commands(doc.read_text(encoding="utf-8")):
        words = args.split()
        name = words[0]
        if name not in COMMANDS:
            problems.append(f"unknown command in `hmtools {args}`")
            continue
        cmd = COMMANDS[name]
        if synopsis:
            unknown = set(re.findall(r"(--[a-z][\w-]*)", args)) - _option_names(cmd)
            if unknown:
                problems.append(f"`hmtools {args.strip()}`: no option {sorted(unknown)}")
            continue
        try:
            cmd.make_context(name, shlex.split(args)[1:], resilient_parsing=False)
        except USAGE_ERRORS as e:
            problems.append(f"`hmtools {args.strip()}`: {e}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_inline_command_spans_name_real_commands_and_options(doc: Path) -> None:
    problems = []
    for span in re.findall(r"`hmtools ([a-z][^`]*)`", doc.read_text(encoding="utf-8")):
        name = span.split()[0]
        if name not in COMMANDS:
            if re.fullmatch(r"[a-z-]+", name) and name not in {"train", "eval", "explain"}:
                problems.append(f"`hmtools {span}`: no command {name!r}")
            continue
        unknown = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", span)) - _option_names(COMMANDS[name])
        if unknown:
            problems.append(f"`hmtools {span}`: no option {sorted(unknown)}")
    assert not problems, "\n".join(problems)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-``/``_`` dropped, spaces to ``-``."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.*)$", text, re.M):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_relative_links_and_anchors_resolve(doc: Path) -> None:
    problems = []
    text = FENCE.sub("", doc.read_text(encoding="utf-8"))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            problems.append(f"link {target}: no file {path}")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            problems.append(f"link {target}: no heading with anchor #{anchor} in {path.name}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_backticked_repository_paths_exist(doc: Path) -> None:
    problems = []
    pattern = rf"`((?:{'|'.join(REPO_DIRS)})/[\w./-]*\.\w+)(?:::(\w+))?[^`]*`"
    for path, func in re.findall(pattern, doc.read_text(encoding="utf-8")):
        if "{" in path or "*" in path or "<" in path:
            continue
        file = REPO / path
        if not file.exists():
            problems.append(f"`{path}` does not exist")
        elif func and not re.search(rf"^def {func}\(", file.read_text(encoding="utf-8"), re.M):
            problems.append(f"`{path}::{func}`: no such test")
    for name in re.findall(r"`(test_\w+)`", doc.read_text(encoding="utf-8")):
        if not any(f"def {name}(" in p.read_text(encoding="utf-8") for p in (REPO / "tests").glob("test_*.py")):
            problems.append(f"`{name}`: no such test function in tests/")
    assert not problems, "\n".join(problems)


def test_readme_command_table_lists_every_command() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `hmtools ([a-z-]+)", text, re.M))
    table |= {"eval", "explain"} if "`hmtools train` / `eval` / `explain`" in text else set()
    assert table == set(COMMANDS)


def _config_table(prefix: str) -> dict[str, str]:
    """``{key: paper default as written}`` of the ``| `prefix.` key |`` table in docs/training.md."""
    text = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    block = text.split(f"| `{prefix}.` key |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in block.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = re.findall(r"`(\w+)`", cells[0])
        values = [v.strip() for v in cells[2].split(",")] if len(names) > 1 else [cells[2]]
        rows.update(zip(names, values, strict=True))
    return rows


def _as_written(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(_as_written(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"' if value == "" else value
    if isinstance(value, float) and value == int(value) and abs(value) >= 1:
        return str(int(value))
    return repr(value)


@pytest.mark.parametrize("prefix", ["model", "train"])
def test_training_config_tables_match_the_dataclasses(prefix: str) -> None:
    from uni_fineparser.config import ModelConfig, TrainConfig

    cls = ModelConfig if prefix == "model" else TrainConfig
    doc = _config_table(prefix)
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    assert set(doc) == set(fields), (
        f"documented but absent: {set(doc) - set(fields)}; undocumented: {set(fields) - set(doc)}"
    )
    for name, default in fields.items():
        written = doc[name].replace("−", "-")
        if written.replace(".", "").replace("-", "").replace("e", "").isdigit():
            assert float(written) == float(default), f"{prefix}.{name}: docs say {written}, code {default}"
        else:
            assert written == _as_written(default), f"{prefix}.{name}: docs say {written}, code {default!r}"


def test_training_options_table_matches_the_train_command() -> None:
    text = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    block = text.split("Options of `hmtools train`:", 1)[1].split("\n\n", 2)[1]
    documented = set(re.findall(r"^\| `(--[\w-]+)", block, re.M))
    assert documented == _option_names(COMMANDS["train"]) - {"--help"}


def test_every_training_config_key_is_in_the_commented_yaml() -> None:
    from uni_fineparser.config import ModelConfig, TrainConfig

    text = (REPO / "configs" / "train_finediving.yaml").read_text(encoding="utf-8")
    for cls in (ModelConfig, TrainConfig):
        missing = [f.name for f in dataclasses.fields(cls) if not re.search(rf"^\s+{f.name}:", text, re.M)]
        assert not missing, f"configs/train_finediving.yaml lacks {missing} (docs/training.md says every key is there)"


def _backticked(text: str) -> set[str]:
    return set(re.findall(r"`([\w.]+)`", text))


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of 2 AQA-7-style samples of 6 frames (one frame without a mask, one empty mask)."""
    from _exchange_fixtures import fill_store, make_samples

    from hmtools.store import MaskStore

    path = tmp_path_factory.mktemp("docs") / "masks.db"
    with MaskStore(path) as store:
        fill_store(store, make_samples(2, 6))
    return path


@pytest.mark.parametrize("fmt", ["coco", "ytvis", "hdf5", "fineparser"])
def test_export_manifest_keys_are_the_documented_ones(small_store: Path, tmp_path: Path, fmt: str) -> None:
    """docs/formats.md "Manifest." names every top-level and ``counts`` key a manifest has."""
    import json

    from hmtools.exchange import export_store

    out = tmp_path / ("folder" if fmt == "fineparser" else f"masks.{fmt}")
    export_store(small_store, fmt, out)
    manifest = out / "manifest.json" if fmt == "fineparser" else Path(f"{out}.manifest.json")
    data = json.loads(manifest.read_text(encoding="utf-8"))
    text = (REPO / "docs" / "formats.md").read_text(encoding="utf-8")
    bullet = _backticked(text.split("- **Manifest.**", 1)[1].split("\n- **", 1)[0])
    for key in (*data, *data["counts"], *data["store"], *data["selection"], *data["options"]):
        assert key in bullet, f"manifest key {key!r} of a {fmt} export is not in docs/formats.md"


def test_stats_json_keys_are_the_documented_ones(small_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/data_format.md gives the object `hmtools stats --json` prints, key for key."""
    import json

    from hmtools.cli import main

    with pytest.raises(SystemExit) as ended:
        main(["stats", "--store", str(small_store), "--json"])
    assert ended.value.code in (0, None)
    data = json.loads(capsys.readouterr().out)
    text = (REPO / "docs" / "data_format.md").read_text(encoding="utf-8")
    shown = text.split("`--json` prints one\nobject: `", 1)[1].split("`", 1)[0]
    assert set(re.findall(r'"(\w+)"', shown)) == set(data)
    assert set(data["by_source"]) == {"auto", "propagated", "human", "imported"}
    assert set(data["by_status"]) == {"unreviewed", "flagged", "accepted", "rejected"}


def _resolves(dotted: str) -> bool:
    """Whether ``a.b.c`` names a module or an attribute reachable from the longest importable prefix."""
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_backticked_python_names_exist(doc: Path) -> None:
    """Every ``hmtools.x.y`` (or uni_fineparser/pipelines/annotator_app) name the docs cite is importable."""
    pattern = r"`((?:hmtools|uni_fineparser|pipelines|annotator_app)(?:\.\w+)+)(?:\([^`]*\))?`"
    names = sorted(set(re.findall(pattern, doc.read_text(encoding="utf-8"))))
    missing = [n for n in names if not _resolves(n)]
    assert not missing, f"{doc.name} cites names that do not exist: {missing}"


def test_readme_lists_every_docs_page() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`(docs/[\w-]+\.md)`", text))
    pages = {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")}
    assert pages <= listed, f"README.md does not list {sorted(pages - listed)}"


def _python_blocks(doc: str) -> list[str]:
    text = (REPO / "docs" / doc).read_text(encoding="utf-8")
    return [m.group(2) for m in FENCE.finditer(text) if m.group(1) == "python"]


def test_formats_reading_examples_run_on_real_exports(
    small_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every Python example of docs/formats.md (and the plain-sqlite reader of data_format.md) runs
    as printed, in a folder holding the file names it uses, each made by ``export_store``."""
    import shutil

    from _datasets_fixtures import write_mat
    from _exchange_fixtures import make_samples, write_frames

    from hmtools.exchange import export_store

    samples = make_samples(2, 6)
    api = tmp_path / "api"  # the API example: its own folder (it writes a PNG AQA-7-HM)
    write_frames(api / "Seven", samples)  # an AQA-7 root with the store's frames and split files
    for split, k in (("train", 1), ("test", 2)):
        write_mat(api / "Seven/Split_4" / f"split_4_{split}_list.mat", f"consolidated_{split}_list", [(1, k, 50.0)])
    shutil.copy(small_store, api / "masks.db")
    monkeypatch.chdir(api)
    blocks = _python_blocks("formats.md")
    assert "import_masks" in blocks[0]
    exec(compile(blocks[0], "formats.md[0]", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out.startswith("imported 11 masks (1 empty) for 2 samples")
    monkeypatch.chdir(tmp_path)
    shutil.copy(small_store, "masks.db")
    names = {"coco": "masks.json", "ytvis": "masks_vis.json", "hdf5": "masks.h5", "fineparser": "AQA-7-HM"}
    for fmt, name in names.items():
        export_store(small_store, fmt, Path(name))
    shutil.copy("masks.json", "a.json")
    shutil.copy("masks.json", "b.json")
    for i, block in enumerate(blocks[1:], 1):
        exec(compile(block, f"formats.md[{i}]", "exec"), {"__name__": "__main__"})
    reader = [b for b in _python_blocks("data_format.md") if "sqlite3.connect" in b]
    assert len(reader) == 1
    code = reader[0].replace("FINADivingWorldCup2021_Men3m_final_r1/0", "diving/001")  # a sample of this store
    scope: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(code, "data_format.md", "exec"), scope)
    assert scope["mask"].shape == (48, 64) and scope["key"] == "diving-out/001/img_00006.jpg"


def test_training_tiny_preset_list_matches_the_code() -> None:
    """docs/training.md lists every key the ``tiny`` preset sets, with its value."""
    from uni_fineparser.config import PRESETS

    text = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    block = text.split("The `tiny` preset sets these keys", 1)[1].split("\n\n", 1)[0]
    for section in ("model", "train"):
        line = re.sub(r"\s+", " ", block.split(f"- {section}: ", 1)[1].split("\n- ", 1)[0]).rstrip(";. ")
        doc = {}
        for item in re.split(r",\s*(?![^\[]*\])", line):
            name, value = item.strip().split(" ", 1)
            doc[name] = re.sub(r"\s*\(.*\)$", "", value).replace("−", "-")
        preset = PRESETS["tiny"][section]
        assert set(doc) == set(preset), f"{section}: docs {sorted(doc)} vs code {sorted(preset)}"
        for name, value in preset.items():
            written = doc[name]
            if "/" in written:
                num, den = written.split("/")
                written = str(float(num) / float(den))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert float(written) == float(value), f"tiny {section}.{name}: docs {doc[name]}, code {value}"
            else:
                assert written == _as_written(value), f"tiny {section}.{name}: docs {doc[name]}, code {value!r}"
