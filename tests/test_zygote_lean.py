"""The warm worker's zygote does once what every child would otherwise do alike (issue 11: the children's CPU per
evaluation): the libc functions a child calls are resolved before the first fork, one socket pair holds every
child's mount namespace, and the zygote's own mount namespace, /dev, ambient capabilities and no_new_privs are
settled once, which each child inherits; the sealed evaluator's module is made once, blank, with its code; and the
zygote loads no OpenSSL for the seal's SHA-256 (libcrypto's memory would be copied at every fork)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from containment import BWRAP, IN_PROCESS, make_task, trial_dir

from evoforge.experiment import Engineer, child_jail, harness, zygote
from evoforge.experiment.child_jail import MountHold
from evoforge.models import TrialStatus

LOOK_AT_PID1 = """
def result():
    def status(pid):
        return dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    zygote, own = status(1), status("self")
    propagated = [line for line in open("/proc/self/mountinfo") if " shared:" in line or " master:" in line]
    dev = [line.split()[5] for line in open("/proc/self/mountinfo") if line.split()[4] == "/dev"]
    return {"score": 1.0, "zygote_nnp": float(zygote["NoNewPrivs"]), "zygote_amb": float(int(zygote["CapAmb"], 16)),
            "own_nnp": float(own["NoNewPrivs"]), "propagated": float(len(propagated)),
            "dev_ro": float(dev[-1].split(",")[0] == "ro")}
"""


def test_the_libc_functions_a_child_calls_are_resolved_before_any_fork() -> None:
    resolved = vars(child_jail._libc)  # ctypes.CDLL keeps a function in the instance once looked up
    assert {"mount", "umount2", "unshare", "prctl", "capset"} <= set(resolved)


def test_one_hold_serves_every_child_of_a_zygote() -> None:
    hold = MountHold()
    let_go = []
    for gives in (True, False, True):
        pid = os.fork()
        if pid == 0:  # the child hands over the namespace it is in (the test's own), or fails before it gives
            if gives:
                hold.give()
            os._exit(0)
        os.waitpid(pid, 0)
        let_go.append(hold.release())
    assert let_go == [1, 0, 1]


@BWRAP
def test_a_child_inherits_what_its_zygote_settled_once(tmp_path: Path) -> None:
    engineer = Engineer(make_task(tmp_path, IN_PROCESS))
    code = LOOK_AT_PID1.strip() + "\n"

    async def scenario() -> list:
        return [await engineer.evaluate(code, trial_dir(tmp_path, n)) for n in (1, 2)]

    for outcome in asyncio.run(scenario()):
        assert outcome.status is TrialStatus.SUCCEEDED, outcome
        seen = outcome.metrics
        assert seen["zygote_nnp"] == 1.0 and seen["zygote_amb"] == 0.0 and seen["own_nnp"] == 1.0
        assert seen["propagated"] == 0.0 and seen["dev_ro"] == 1.0


def test_the_zygote_makes_the_evaluators_module_once_and_never_runs_it(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    evaluator = tmp_path / "evaluator.py"
    evaluator.write_text("RAN = True\n\ndef evaluate(path):\n    return {'score': 1.0}\n")
    sealed = hashlib.sha256(evaluator.read_bytes()).hexdigest()
    job = {"argv": [str(evaluator), "program.py"], "evaluator_sha256": sealed}
    monkeypatch.setattr(zygote, "_compiled", {})
    first, again = zygote.precompiled(job), zygote.precompiled(job)
    assert first is not None and again is not None and first[2] is again[2]
    module = first[2]
    assert "RAN" not in vars(module) and module.__spec__.origin == first[0] == str(evaluator.resolve())
    monkeypatch.setattr(harness, "PRECOMPILED", first)  # as a child of the zygote finds it
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "evoforge_evaluator", raising=False)
    evaluate = harness.load_evaluate(first[0])
    assert vars(module)["RAN"] is True and evaluate is vars(module)["evaluate"]  # its code ran in that module
    assert sys.modules["evoforge_evaluator"] is module and module.__file__ == first[0]


def test_the_zygote_checks_the_seal_without_openssl() -> None:
    code = "import sys, evoforge.experiment.zygote as z; print(sorted({'hashlib', '_hashlib'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
