"""Isolation modes and the supervisor under them: mode choice and its errors, the jail's folders, the wrapper
command, and real supervised processes (exit status, capabilities, rlimits, scheduling, SIGTERM, fork bomb)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from evoforge.config import Limits
from evoforge.errors import EvoforgeError
from evoforge.experiment import isolation, sandbox
from evoforge.experiment.isolation import IsolationUnavailable, Jail, describe_isolation, jail_for, probe, resolve

MODES = [pytest.param(m, marks=pytest.mark.skipif(probe(m) is not None, reason=f"{m}: {probe(m)}"))
         for m in ("bwrap", "unshare", "none")]


def fake_probe(monkeypatch: pytest.MonkeyPatch, working: set[str]) -> None:
    monkeypatch.setattr(isolation, "probe", lambda mode: None if mode in working | {"none"} else f"{mode} missing")
    isolation.reset_warnings()


def test_auto_prefers_bwrap_then_unshare_and_warns_once(monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    fake_probe(monkeypatch, {"bwrap", "unshare"})
    assert resolve("auto", network=False) == "bwrap"
    fake_probe(monkeypatch, {"unshare"})
    with caplog.at_level(logging.WARNING, logger="evoforge.experiment.isolation"):
        assert resolve("auto", network=True) == "unshare"
        assert resolve("auto", network=True) == "unshare"
    assert [r.getMessage() for r in caplog.records] == ["sandbox isolation: unshare (bwrap unavailable: bwrap missing)"]
    fake_probe(monkeypatch, set())
    with pytest.raises(IsolationUnavailable, match="auto found no sandbox"):  # never `none` unless named
        resolve("auto", network=True)


def test_impossible_isolation_is_a_user_error_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probe(monkeypatch, set())
    with pytest.raises(IsolationUnavailable, match="limits.isolation: bwrap is unavailable: bwrap missing"):
        resolve("bwrap", network=True)
    with pytest.raises(EvoforgeError, match="limits.isolation: none cannot cut the network"):
        resolve("none", network=False)
    with pytest.raises(IsolationUnavailable, match="limits.network: true"):
        describe_isolation(Limits(isolation="none", network=False))
    with pytest.raises(IsolationUnavailable, match="not one of"):
        resolve("docker", network=True)


def test_describe_isolation_says_mode_network_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probe(monkeypatch, {"bwrap"})
    line = describe_isolation(Limits(network=False, max_processes=64, cpu_s=None))
    assert line.startswith("sandbox isolation: bubblewrap: read-only root")
    assert "network off" in line and "processes 64" in line and "cpu unlimited" in line


def test_jail_protects_task_trials_and_record_folders(tmp_path: Path) -> None:
    trial = tmp_path / "run" / "trials" / "3"
    trial.mkdir(parents=True)
    (tmp_path / "task").mkdir()
    env = {"EVOFORGE_TRIAL_DIR": str(trial), "EVOFORGE_TASK_DIR": str(tmp_path / "task")}
    runtime = set(isolation.runtime_paths())  # interpreter, venv, package, sys.path: visible under bwrap
    mine = set(jail_for("unshare", True, env, trial).readonly) - runtime
    assert mine == {tmp_path / "run" / "trials", tmp_path / "task"}
    (tmp_path / "run" / "record.db").touch()
    jail = jail_for("unshare", True, env, trial)
    assert [p for p in jail.readonly if p not in runtime] == [tmp_path / "run", tmp_path / "task",
                                                              tmp_path / "run" / "trials"]  # outer folders first
    assert [len(p.parts) for p in jail.readonly] == sorted(len(p.parts) for p in jail.readonly)
    assert jail.writable == trial and jail.cwd == trial


def test_bwrap_command_binds_the_trial_folder_last_and_cuts_the_network_only_when_asked(tmp_path: Path) -> None:
    jail = Jail("bwrap", True, tmp_path / "trial", (tmp_path / "task",), tmp_path)
    argv = isolation.wrapper_argv(jail)
    assert "--unshare-net" not in argv and argv[-1] == "--"
    assert argv.index("--tmpfs") < argv.index(str(tmp_path / "task")) < argv.index(str(tmp_path / "trial"))
    assert argv[argv.index(str(tmp_path / "trial")) - 1] == "--bind"
    assert "--unshare-net" in isolation.wrapper_argv(Jail("bwrap", False, tmp_path, (), tmp_path))
    assert "--net" in isolation.wrapper_argv(Jail("unshare", False, tmp_path, (), tmp_path))


def supervise(mode: str, tmp_path: Path, script: str, *options: str) -> subprocess.CompletedProcess[str]:
    trial = tmp_path / "trials" / "1"
    trial.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ["PATH"], "EVOFORGE_TRIAL_DIR": str(trial)}
    cmd = [sys.executable, "-I", "-S", str(sandbox.SUPERVISOR), "--isolation", mode, *options, "--",
           "sh", "-c", script]
    return subprocess.run(cmd, cwd=trial, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("mode", MODES)
def test_exit_codes_and_fatal_signals_come_through_the_wrapper(tmp_path: Path, mode: str) -> None:
    assert supervise(mode, tmp_path, "exit 7").returncode == 7
    assert supervise(mode, tmp_path, "kill -SEGV $$").returncode == -signal.SIGSEGV


@pytest.mark.parametrize("mode", MODES)
def test_the_command_gets_its_rlimits_normal_scheduling_and_no_capabilities(tmp_path: Path, mode: str) -> None:
    script = ("ulimit -n; ulimit -v; grep CapEff /proc/self/status; "
              "python3 -c 'import os; print(os.sched_getscheduler(0))'")
    done = supervise(mode, tmp_path, script, "--max-open-files", "77", "--memory-mb", "512")
    lines = done.stdout.split()
    assert lines[:2] == ["77", str(512 * 1024)], done.stderr
    assert lines[-1] == str(os.SCHED_OTHER)
    if mode != "none":
        assert lines[3] == "0000000000000000"


@pytest.mark.parametrize("mode", [p for p in MODES if p.values[0] != "none"])
def test_remounting_the_read_only_folders_is_refused(tmp_path: Path, mode: str) -> None:
    done = supervise(mode, tmp_path, "mount -o remount,rw,bind .. && touch ../evil")
    assert done.returncode != 0 and not (tmp_path / "trials" / "evil").exists()


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_passes_on_with_a_grace_then_nothing_survives(tmp_path: Path, mode: str) -> None:
    trial = tmp_path / "trials" / "1"
    trial.mkdir(parents=True)
    script = "trap 'echo bye > graceful; exit 3' TERM; sleep 300 & echo go > started; wait"
    cmd = [sys.executable, "-I", "-S", str(sandbox.SUPERVISOR), "--isolation", mode, "--", "sh", "-c", script]
    token = uuid.uuid4().hex
    env = {"PATH": os.environ["PATH"], "EVOFORGE_TRIAL_DIR": str(trial), sandbox.TOKEN_VAR: token}
    proc = subprocess.Popen(cmd, cwd=trial, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (trial / "started").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert (trial / "graceful").read_text() == "bye\n"
    assert sandbox.sweep(token) == []


@pytest.mark.parametrize("mode", MODES)
def test_fork_bomb_in_a_shell_is_stopped_fast(tmp_path: Path, mode: str) -> None:
    bomb = "end=$(($(date +%s) + 100)); b() { [ $(date +%s) -lt $end ] && { b & b & wait; }; }; b"
    done = supervise(mode, tmp_path, bomb, "--max-processes", "30")
    # the supervisor's own kill for the process limit, not the bomb's own 100 s end (no wall-clock bound: a loaded
    # machine once took 112 s to get here)
    assert done.returncode == -signal.SIGKILL and "max_processes=30" in done.stderr


def test_a_non_root_user_also_gets_the_kernels_process_limit(tmp_path: Path) -> None:
    python = Path("/usr/bin/python3")  # our venv's interpreter may live under /root, unreadable for nobody
    if os.getuid() != 0 or not shutil.which("setpriv") or not python.exists():
        pytest.skip("needs root, setpriv and /usr/bin/python3 to run the supervisor as nobody")
    tmp_path.chmod(0o777)
    bomb = "end=$(($(date +%s) + 15)); b() { [ $(date +%s) -lt $end ] && { b & b & wait; }; }; b; echo done"
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(python), "-I", "-S",
           str(sandbox.SUPERVISOR), "--isolation", "none", "--max-processes", "20", "--", "sh", "-c", bomb]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin"})
    if "can't open file" in done.stderr or "Permission denied" in done.stderr:
        pytest.skip(f"nobody cannot read the checkout: {done.stderr[:200]}")
    assert "Cannot fork" in done.stderr, done.stderr[-300:]  # RLIMIT_NPROC held the tree at 20 tasks


@pytest.mark.skipif(probe("bwrap") is not None, reason=f"bwrap: {probe('bwrap')}")
def test_a_runtime_folder_reached_through_a_symlink_is_visible_in_the_jail(tmp_path: Path) -> None:
    # a checkout under /tmp whose .venv links to a virtualenv elsewhere under /tmp: binding the link onto itself made
    # bwrap follow it inside the new root and refuse every evaluation ("Can't bind mount ... No such file")
    real, checkout, trial = tmp_path / "venvs" / "real", tmp_path / "checkout", tmp_path / "trial"
    (real / "bin").mkdir(parents=True)
    (real / "bin" / "marker").write_text("inside\n")
    checkout.mkdir()
    trial.mkdir()
    (checkout / ".venv").symlink_to(real)
    (tmp_path / "alias").symlink_to(real)  # a link whose folder is the jail's fresh /tmp: made again there
    readonly = (checkout, checkout / ".venv", real, checkout / ".venv" / "bin", tmp_path / "alias" / "bin")
    jail = Jail("bwrap", network=False, writable=trial, readonly=readonly, cwd=trial)
    for path in (checkout / ".venv" / "bin" / "marker", tmp_path / "alias" / "bin" / "marker"):
        done = subprocess.run([*isolation.wrapper_argv(jail), "cat", str(path)], capture_output=True, text=True,
                              timeout=60)
        assert (done.returncode, done.stdout) == (0, "inside\n"), done.stderr
