"""Units of the experiment pillar: supervisor, token sweep, capped logs, env, result checks, telemetry."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evoforge import telemetry
from evoforge.experiment import sandbox
from evoforge.experiment.harness import _jsonable, wants_ctx
from evoforge.experiment.result import BadResult, last_json_line, read_result_file, validate
from evoforge.experiment.sandbox import TOKEN_VAR, _CappedLog, child_env, sweep


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def wait_for_file(path: Path, seconds: float = 10.0) -> str:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)
    return path.read_text()


ESCAPER = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open(sys.argv[1] + ".tmp", "w").write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(300)
    os._exit(0)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
sys.exit(int(sys.argv[2]))
"""


def test_supervisor_alone_reaps_a_double_forked_escapee_and_keeps_the_exit_code(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    supervisor = [sys.executable, "-I", "-S", str(sandbox.SUPERVISOR), "--"]
    cmd = [*supervisor, sys.executable, "-c", ESCAPER, str(pid_file), "5"]
    done = subprocess.run(cmd, timeout=30, start_new_session=True)
    assert done.returncode == 5
    assert not alive(int(pid_file.read_text()))


def test_supervisor_passes_on_the_childs_fatal_signal() -> None:
    cmd = [sys.executable, "-I", "-S", str(sandbox.SUPERVISOR), "--", "sh", "-c", "kill -SEGV $$"]
    assert subprocess.run(cmd, timeout=30).returncode == -11


def test_sweep_kills_processes_carrying_the_token_only(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    marked = subprocess.Popen(["sleep", "300"], env={**env, TOKEN_VAR: "abc123"}, start_new_session=True)
    other = subprocess.Popen(["sleep", "300"], env={**env, TOKEN_VAR: "abc1234"}, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while b"sleep" not in Path(f"/proc/{marked.pid}/cmdline").read_bytes():  # wait for exec
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert sweep("abc123") == [marked.pid]
        assert marked.wait(timeout=60) == -9
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize(
    ("size", "cap"), [(0, 100), (99, 100), (100, 100), (101, 100), (10_000, 100), (5, 3)]
)
def test_capped_log_never_exceeds_the_cap_and_keeps_the_end(tmp_path: Path, size: int, cap: int) -> None:
    data = bytes(i % 251 for i in range(size))
    log = _CappedLog(tmp_path / "out.log", cap)
    for i in range(0, size, 7):
        log.feed(data[i : i + 7])
    tail, dropped = log.finish()
    assert (tmp_path / "out.log").exists() == (size > 0)  # a stream that stays empty leaves no file
    written = (tmp_path / "out.log").read_bytes() if size else b""
    assert tail == data[-sandbox.TAIL_BYTES :]
    if size <= cap:
        assert written == data and dropped == 0
    else:
        assert len(written) <= cap and dropped > 0
        assert written.startswith(data[: cap // 2])


def test_a_capped_log_replaces_an_earlier_runs_file_even_when_it_stays_empty(tmp_path: Path) -> None:
    (tmp_path / "quiet.log").write_bytes(b"an earlier run's output\n")
    (tmp_path / "loud.log").write_bytes(b"an earlier run's output, longer than this one's\n")
    quiet, loud = _CappedLog(tmp_path / "quiet.log", 100), _CappedLog(tmp_path / "loud.log", 100)
    loud.feed(b"")
    loud.feed(b"new\n")
    assert quiet.finish() == (b"", 0) and loud.finish() == (b"new\n", 0)
    assert not (tmp_path / "quiet.log").exists() and (tmp_path / "loud.log").read_bytes() == b"new\n"



def test_a_capped_log_holds_what_came_before_the_stage_ends(tmp_path: Path) -> None:
    """A long evaluation's log can be followed while it runs (and what it printed before a kill is on disk)."""
    log = _CappedLog(tmp_path / "out.log", 1000)
    log.feed(b"epoch 1 loss 0.9\n")
    assert (tmp_path / "out.log").read_bytes() == b"epoch 1 loss 0.9\n"
    log.feed(b"epoch 2 loss 0.7\n")
    assert (tmp_path / "out.log").read_bytes() == b"epoch 1 loss 0.9\nepoch 2 loss 0.7\n"
    assert log.finish() == (b"epoch 1 loss 0.9\nepoch 2 loss 0.7\n", 0)

def test_child_env_drops_secrets_keeps_passthrough_and_sets_pythonpath() -> None:
    base = {"HOME": "/root", "AWS_SECRET_ACCESS_KEY": "s", "github_token": "t", "OPENAI_ORG": "o",
            "ANTHROPIC_BASE_URL": "u", "EVOFORGE_LLM_URL": "l", "DB_PASSWORD": "p", "HF_TOKEN": "h",
            "PYTHONPATH": "/extra"}
    env = child_env({"EVOFORGE_RESULT": "/r"}, passthrough=["HF_TOKEN"], base=base)
    assert env["HOME"] == "/root" and env["HF_TOKEN"] == "h" and env["EVOFORGE_RESULT"] == "/r"
    dropped = ("AWS_SECRET_ACCESS_KEY", "github_token", "OPENAI_ORG", "ANTHROPIC_BASE_URL",
               "EVOFORGE_LLM_URL",
               "DB_PASSWORD")
    for name in dropped:
        assert name not in env
    assert env["PYTHONPATH"].split(":") == [str(sandbox.PACKAGE_ROOT), "/extra"]


def test_validate_accepts_finite_numbers_and_names_each_problem() -> None:
    assert validate({"score": 3}, "score") == (3.0, {"score": 3})
    assert validate({"acc": 0.5, "x": [1, math.inf]}, "acc") == (0.5, {"acc": 0.5, "x": [1, "Infinity"]})
    problems = {
        "score is NaN": {"score": math.nan},
        "score is +inf": {"score": math.inf},
        "score is a bool (False), expected a finite number": {"score": False},
        "score is a str ('high'), expected a finite number": {"score": "high"},
        "metric 'score' missing from result: got keys ['a', 'b']": {"b": 1, "a": 2},
        "score is an integer too large": {"score": 10**400},
        "result must be a JSON object with a 'score' entry, got float: 0.5": 0.5,
    }
    for needle, result in problems.items():
        with pytest.raises(BadResult, match=None) as info:
            validate(result, "score")
        assert needle in str(info.value)


def test_result_readers(tmp_path: Path) -> None:
    assert read_result_file(tmp_path / "missing.json") is None
    (tmp_path / "r.json").write_text('{"score": NaN}')
    assert math.isnan(read_result_file(tmp_path / "r.json")["score"])
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(BadResult, match="bad.json is not valid JSON"):
        read_result_file(tmp_path / "bad.json")
    text = 'log\n{"score": 1}\n{"score": 2} \n[1, 2]\n{not json}\nbye\n'
    assert last_json_line(text) == {"score": 2}
    assert last_json_line("nothing\n[1]\n") is None


def test_harness_helpers() -> None:
    def one(path): ...  # noqa: ANN001, ANN202
    def two(path, ctx=None): ...  # noqa: ANN001, ANN202
    def kw_only(path, *, timeout_s=None): ...  # noqa: ANN001, ANN202
    def star(*args): ...  # noqa: ANN002, ANN202

    assert [wants_ctx(f) for f in (one, two, kw_only, star)] == [False, True, False, True]

    class Scalar:
        def item(self) -> float:
            return 1.5

    assert json.loads(json.dumps({"s": Scalar()}, default=_jsonable)) == {"s": 1.5}
    with pytest.raises(TypeError, match="object is not JSON-serializable"):
        json.dumps({"s": object()}, default=_jsonable)


def test_telemetry_report_appends_or_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "telemetry.jsonl"
    monkeypatch.delenv(telemetry.ENV_VAR, raising=False)
    telemetry.report(step=1, loss=1.0)
    assert not path.exists()
    monkeypatch.setenv(telemetry.ENV_VAR, str(path))
    telemetry.report(step=1, loss=1.0)
    telemetry.report(lr=3, loss=math.nan)
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["step"] == 1 and first["loss"] == 1.0 and isinstance(first["t"], float)
    assert second["step"] is None and second["lr"] == 3.0 and math.isnan(second["loss"])
    with pytest.raises(TypeError, match="'t' is reserved"):
        telemetry.report(t=1.0)
    with pytest.raises(TypeError, match="'loss' must be a number, got str"):
        telemetry.report(loss="high")


def test_a_capped_log_whose_file_cannot_be_made_keeps_the_tail(tmp_path: Path) -> None:
    log = _CappedLog(tmp_path / "gone" / "out.log", 100)
    log.feed(b"first ")
    log.feed(b"second\n")  # no error from the pump's callback, and no second try
    assert log.finish() == (b"first second\n", 13)  # the outcome's tail; none of it in a file
    assert not (tmp_path / "gone").exists()
