"""`hmtools annotate` start-up checks: bind address vs authentication, credentials, missing inputs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO
from typer.testing import CliRunner

from annotator_app.server import check_bind, is_loopback, parse_auth
from hmtools.cli import app
from hmtools.errors import InputError


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "hmtools", "annotate", *args]
    return subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO), "PATH": ""}
    )


def test_non_loopback_without_auth_is_refused_with_exit_2(tmp_path):
    out = _run("--store", str(tmp_path / "x.db"), "--root", str(tmp_path), "--host", "0.0.0.0", "--segmenter", "fake")
    assert out.returncode == 2
    assert "--host 0.0.0.0 exposes the annotator" in out.stderr and "--auth" in out.stderr


def test_missing_store_is_exit_2(tmp_path):
    out = _run("--store", str(tmp_path / "none.db"), "--root", str(tmp_path), "--segmenter", "fake")
    assert out.returncode == 2 and "no mask store" in out.stderr


@pytest.mark.parametrize("ttl", ["0", "-5"])
def test_a_lease_of_no_length_is_refused(tmp_path, ttl):
    """--lock-ttl 0 would expire every lease at once: every Open would fail after the server started."""
    res = CliRunner().invoke(app, ["annotate", "--store", "x.db", "--root", str(tmp_path), "--lock-ttl", ttl])
    assert res.exit_code == 2 and "--lock-ttl" in res.output


def test_cli_passes_credentials_and_options_to_serve(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("annotator_app.server.serve", lambda store, root, **kw: seen.update(kw, store=store))
    (tmp_path / "users.txt").write_text("# annotators\nbob:pw2\n\n")
    args = ["annotate", "--store", "s.db", "--root", str(tmp_path), "--host", "0.0.0.0", "--auth", "alice:pw1"]
    args += ["--auth-file", str(tmp_path / "users.txt"), "--segmenter", "fake", "--port", "7999", "--lock-ttl", "60"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert seen["auth"] == [("alice", "pw1"), ("bob", "pw2")] and seen["host"] == "0.0.0.0"
    assert (seen["port"], seen["segmenter"], seen["lock_ttl_s"]) == (7999, "fake", 60.0)


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
                                       ("0.0.0.0", False), ("192.168.1.4", False), ("example.org", False)])  # fmt: skip
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop


def test_bad_credentials_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="USER:PASS"):
        parse_auth(["alice"], None)
    with pytest.raises(InputError, match="USER:PASS"):
        parse_auth([":pw"], None)
    with pytest.raises(InputError, match="cannot read --auth-file"):
        parse_auth([], tmp_path / "missing.txt")
    check_bind("0.0.0.0", [("a", "b")])  # with credentials any address is allowed


@pytest.mark.parametrize(
    ("extra", "says"), [(["--port", "0"], "--port"), (["--port", "70000"], "--port"), ([], "UTF-8")]
)
def test_bad_port_or_binary_auth_file_is_exit_2_before_serving(tmp_path, capsys, extra, says):
    """A port gradio cannot bind, or an --auth-file of bytes: one line, exit 2, no traceback."""
    from hmtools.cli import main

    (tmp_path / "auth.bin").write_bytes(b"\xa6\xff\x00" * 8)
    auth = [] if extra else ["--auth-file", str(tmp_path / "auth.bin")]
    args = ["annotate", "--store", str(tmp_path / "x.db"), "--root", str(tmp_path), "--segmenter", "fake"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([*args, *extra, *auth])
    err = capsys.readouterr().err
    assert e.value.code == 2 and says in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auth.bin"]
