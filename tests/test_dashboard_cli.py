"""`evoforge dashboard` as a user runs it: it prints the address and serves the run; a taken port, a folder with no
record, or a missing extra is one line and exit status 2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("uvicorn", reason="the dashboard extra is not installed: pip install -e '.[dashboard]'")

from recordfactory import make_record  # noqa: E402

CLI = [sys.executable, "-m", "evoforge.cli", "dashboard"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dash-cli") / "run"
    make_record(folder)
    return folder


def test_it_prints_the_address_and_serves_the_run(run_dir: Path) -> None:
    proc = subprocess.Popen([*CLI, str(run_dir), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout=60)  # a hang guard only: the line comes as soon as the socket is bound
        assert lines and lines[0].startswith("dashboard: http://127.0.0.1:"), (lines, proc.poll())
        url = lines[0].split()[1]
        with urllib.request.urlopen(url + "api/runs", timeout=30) as response:
            runs = json.loads(response.read())
        assert [r["total"] for r in runs] == [5]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_taken_port_is_one_line(run_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([*CLI, str(run_dir), "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: cannot serve on 127.0.0.1:{port}: Address already in use; "
                                                "try another --port or --host"]


def test_a_folder_without_a_record_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([*CLI, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "no record at" in proc.stderr


def test_without_the_extra_it_says_what_to_install(run_dir: Path) -> None:
    code = ("import sys; sys.modules['uvicorn'] = None; from evoforge.__main__ import main; "
            f"sys.argv = ['evoforge', 'dashboard', {str(run_dir)!r}]; sys.exit(main())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("error: the dashboard needs its extra (uvicorn is missing): "
                                   "pip install 'evoforge[dashboard]'")


def test_the_command_line_loads_no_web_stack_until_the_dashboard_runs() -> None:
    """`evoforge --help`, `status` and the others stay fast: the dashboard's modules (FastAPI, uvicorn) load only when
    `evoforge dashboard` runs, and the dashboard itself loads neither the loop nor an LLM client."""
    web = ("fastapi", "uvicorn", "starlette", "evoforge.dashboard")
    code = f"import sys, evoforge.cli; print([m for m in {web!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", (done.stdout, done.stderr)
    heavy = ("evoforge.loop", "evoforge.llm", "evoforge.research", "evoforge.analysis", "openai")
    code = f"import sys, evoforge.dashboard.app; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", (done.stdout, done.stderr)
