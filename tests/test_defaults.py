"""Defaults that protect (issue 9 §4): no network for candidates unless the task opts in, `auto` never falls back
to running candidates unjailed, the run start says plainly what a weaker isolation allows, and a crash message
starts at a whole traceback frame."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from containment import CONNECT, IN_PROCESS, NAMESPACED, THROUGH_HELPER, evaluate, make_task, trial_dir

from evoforge.config import Limits
from evoforge.experiment import isolation
from evoforge.experiment.engineer import traceback_tail
from evoforge.experiment.isolation import IsolationUnavailable, describe_isolation, resolve
from evoforge.models import TrialStatus


@pytest.mark.parametrize("evaluator", [IN_PROCESS, THROUGH_HELPER], ids=["in-process", "helper"])
@pytest.mark.parametrize("mode", [*NAMESPACED, "auto"])
def test_by_default_a_candidate_cannot_connect_out(tmp_path: Path, mode: str, evaluator: str) -> None:
    if mode != "auto" and isolation.probe(mode) is not None:
        pytest.skip(f"{mode}: {isolation.probe(mode)}")
    with socket.create_server(("127.0.0.1", 0)) as server:  # a listener in the host's network namespace
        code = CONNECT.replace("{port}", str(server.getsockname()[1]))
        shut = evaluate(make_task(tmp_path, evaluator, isolation=mode), code, trial_dir(tmp_path))
        opened = evaluate(make_task(tmp_path, evaluator, isolation=mode, network=True), code, trial_dir(tmp_path, 2))
    assert shut.status is TrialStatus.SUCCEEDED and shut.score == 0.0, (shut.error_message, shut.metrics)
    assert opened.status is TrialStatus.SUCCEEDED and opened.score == 1.0, (opened.error_message, opened.metrics)


def fake_probe(monkeypatch: pytest.MonkeyPatch, working: set[str]) -> None:
    monkeypatch.setattr(isolation, "probe", lambda mode: None if mode in working | {"none"} else f"{mode} missing")
    isolation.reset_warnings()


def test_auto_never_runs_candidates_unjailed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probe(monkeypatch, set())
    with pytest.raises(IsolationUnavailable) as caught:
        resolve("auto", network=True)
    message = str(caught.value)
    assert "\n" not in message and "install bubblewrap" in message and "limits.isolation: none" in message
    with pytest.raises(IsolationUnavailable, match="none cannot cut the network"):
        resolve("none", network=Limits().network)
    assert resolve("none", network=True) == "none"  # named, with the network it cannot cut


def test_the_run_start_says_network_and_what_a_weaker_isolation_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probe(monkeypatch, {"bwrap", "unshare"})
    assert "network off" in describe_isolation(Limits())
    assert "network on" in describe_isolation(Limits(network=True))
    fake_probe(monkeypatch, {"unshare"})
    weaker = describe_isolation(Limits())
    assert "WEAKER" in weaker and "home folder" in weaker and "the record" in weaker
    bare = describe_isolation(Limits(isolation="none", network=True))
    assert "NO SANDBOX" in bare and "API keys" in bare and "/proc" in bare


def test_a_crash_message_starts_at_a_whole_frame() -> None:
    frames = "".join(f'  File "x.py", line {n}, in f{n}\n    return f{n + 1}(a[0] + b)\n           ^^^^^^^^^^^^\n'
                     for n in range(6))
    text = "Traceback (most recent call last):\n" + frames + "ZeroDivisionError: division by zero\n"
    tail = traceback_tail(text, limit=12)
    assert tail[0].startswith("  File ") and tail[-1] == "ZeroDivisionError: division by zero"
    assert len(tail) == 10


def test_a_crashing_candidates_message_has_no_stray_marker_line(tmp_path: Path) -> None:
    deep = "def f(n):\n    return 1 / (n - n) if n == 0 else f(n - 1) + 0\n\ndef result():\n    return f(9)\n"
    out = evaluate(make_task(tmp_path), deep, trial_dir(tmp_path))
    assert out.error_class == "crash:ZeroDivisionError"
    second = (out.error_message or "").splitlines()[1]
    assert second.startswith("  File "), out.error_message
