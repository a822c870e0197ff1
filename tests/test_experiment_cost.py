"""Work the experiment side does once, not at each trial or stage: a program is parsed once for its fingerprint and
its static check, a trial started ahead is not written again when it is evaluated, the warm workers' jail
layout is worked out once per trials folder, and what each warm child would read or import alike is done once by
its zygote."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from containment import BWRAP, IN_PROCESS, trial_dir
from containment import make_task as make_jailed_task
from taskfactory import make_task

import evoforge
from evoforge.config import RunSettings
from evoforge.experiment import warm
from evoforge.experiment.gates import static
from evoforge.memory.record import Record
from evoforge.models import Trial

Counts = dict[str, Counter[Any]]


def counted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trials: int) -> tuple[Counts, list[Trial]]:
    """An offline run (concurrency 1) with, counted: the static gate's parses (by program), the programs written
    into trial folders (by folder) and the warm workers' jail layouts worked out (by trial folder)."""
    counts: Counts = {"parse": Counter(), "write": Counter(), "layout": Counter()}
    real_parse, real_write, real_jail_for = static.ast.parse, Path.write_text, warm.jail_for

    def parse(source: Any, *args: Any, **kwargs: Any) -> Any:
        if sys._getframe(1).f_globals.get("__name__") == static.__name__:
            counts["parse"][source] += 1
        return real_parse(source, *args, **kwargs)

    def write_text(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        if self.name == "program.py" and self.parent.parent.name == "trials":
            counts["write"][self.parent.name] += 1
        return real_write(self, data, *args, **kwargs)

    def jail_for(mode: str, network: bool, env: Any, cwd: Path, *args: Any, **kwargs: Any) -> Any:
        counts["layout"][env.get("EVOFORGE_TRIAL_DIR")] += 1
        return real_jail_for(mode, network, env, cwd, *args, **kwargs)

    static._parsed.cache_clear()
    warm._layouts.clear()
    monkeypatch.setattr(static.ast, "parse", parse)
    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setattr(warm, "jail_for", jail_for)
    evoforge.run(make_task(tmp_path / "task"), run_dir=tmp_path / "run",
                 settings=RunSettings(trials=trials, concurrency=1, llm="offline"))
    with Record.for_run_dir(tmp_path / "run") as record:
        done = record.trials()
    assert len(done) == trials and all(t.status.finished for t in done)
    return counts, done


def test_each_program_is_parsed_once_and_written_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counts, done = counted_run(tmp_path, monkeypatch, 5)
    # its fingerprint at its proposal, its static check when started ahead and when evaluated: one parse (3 before)
    assert set(counts["parse"]) == {t.code for t in done}
    assert set(counts["parse"].values()) == {1}
    # into its trial folder when started ahead, or when evaluated; not again when the one started ahead is evaluated
    assert set(counts["write"].values()) == {1}
    assert len(counts["write"]) == len({t.code for t in done})


@BWRAP
def test_the_warm_jail_layout_is_worked_out_once_per_trials_folder(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    counts, done = counted_run(tmp_path, monkeypatch, 4)
    assert sum(counts["layout"].values()) == 1  # at the first stage; each one's before
    assert all(t.score is not None for t in done)  # and every trial ran (warm) with it


COUNTING = """
import sys
READS = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())["syscr"]  # since the fork
MODULES = set(sys.modules)

def evaluate(program_path):
    import runpy, traceback
    runpy.run_path(program_path)
    try:
        raise ValueError("handled")
    except ValueError:
        traceback.format_exc()
    return {"score": 1.0, "reads": float(READS), "imported": " ".join(sorted(set(sys.modules) - MODULES))}
"""


@BWRAP
def test_a_warm_child_reads_and_imports_nothing_its_zygote_can_do_once(tmp_path: Path) -> None:
    import asyncio

    from evoforge.experiment import Engineer

    engineer = Engineer(make_jailed_task(tmp_path, COUNTING))

    async def scenario() -> list[Any]:
        return [await engineer.evaluate("def result():\n    return 1\n", trial_dir(tmp_path, n)) for n in (1, 2)]

    for outcome in asyncio.run(scenario()):  # a fresh worker's first child, then the next child of the same worker
        assert outcome.score == 1.0, outcome
        # its job's channel line: not the evaluator's file (compiled by its zygote, 2 reads), /proc/self/mountinfo
        # (twice), cap_last_cap or /proc/self/stat (15 reads when each child worked its jail's layout out)
        assert outcome.metrics["reads"] == 1
        assert outcome.metrics["imported"] == ""  # runpy.run_path's pkgutil (and typing), traceback: in the zygote


TRICKY = '''"""module doc"""
import os
def f():
    """f's doc"""
    if os.sep:
        def g():
            "g's doc"
            return 1
    else:
        class C:
            """C's doc"""
            x: int = 1
    for _ in range(2):
        async def h(): "h"; return None
    while False:
        pass
    else:
        def i(): "i"
    try:
        def j(): "j"
    except* ValueError:
        def k(): "k"
    finally:
        def l(): "l"
    with open(os.devnull) as fh:
        def m(): "m"
    match fh:
        case [1, *rest] if rest:
            def n(): "n"
        case {"a": b, **kw}:
            "not a docstring"
    return lambda: "a lambda's string" + f"{g!r:>10}" + b"bytes".decode() + str(1j) + str(...)
'''


def _reference_fingerprint(code: str) -> str:
    """The fingerprint as it was first computed (ast.walk over every node, ast.dump): records hold these."""
    import ast
    import hashlib

    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(b"py:" + ast.dump(tree).encode()).hexdigest()


def test_fingerprints_are_those_a_record_already_holds() -> None:
    import asyncio
    import json

    sources = [TRICKY, "", "x = 1\n", '"""only a docstring"""\n']
    for module in (evoforge, asyncio, json, pytest):
        sources += [p.read_text() for p in sorted(Path(module.__file__).parent.rglob("*.py"))]
    assert len(sources) > 150
    for code in sources:
        assert static.program_fingerprint(code, "program.py") == _reference_fingerprint(code)


# Statements whose text repeats in other places and programs (the fingerprint takes a statement's part from an
# earlier program with the same text): decorators and comments before a statement, several on one line, a first
# statement that is a docstring in one program and not in the next, multi-byte characters before an offset, the
# three kinds of line ends, a line continued, and programs a few statements apart.
SHARED = [
    "x = 0\n@a\ndef f(): 'doc'; return 1\n",
    "x = 0\n@b\ndef f(): 'doc'; return 1\n",
    "x = 0\n# a comment\n@b\ndef f(): 'doc'; return 1\n",
    "x = 0\n@b\n@a\nclass C: 'doc'\n",
    "x = 0\n@a\nclass C: 'doc'\n",
    "x = 'é'; y = 2\nz = 'ü' ; w = 3\n",
    "x = 'é'; y = 3\nz = 'ü' ; w = 3\n",
    "\n'doc'\nx = 1\n",
    "x = 1\n'doc'\n",
    "'doc'\n'doc'\nx = 1\n",
    "x = 1\n'doc'\n'doc'\n",
    "'doc'\n",
    "x = 1\r\ny = [1,\r\n 2]\r\nif x:\r\n    'doc'\r\n",
    "x = 1\ry = [1,\r 2]\rif x:\r    'doc'\r",
    "x = 1 + \\\n    2\ny = 2\n",
    "class C:\n    'doc'\n    def m(self): 'doc'\n",
    "class C:\n    def m(self): 'doc'\n",
    "import a.b as c, d\nfrom e import (f,\n    g as h)\ni: int = j = k = 1\n(l, [m, *n]) = o\np += 1\n",
]


def test_fingerprints_from_statements_seen_before_are_those_of_the_whole_program() -> None:
    static._statements.clear()
    programs = SHARED + [TRICKY]
    programs += [p.replace("\n", "\r\n") for p in programs] + [p.replace("\n", "\r") for p in programs]
    lines = TRICKY.splitlines(keepends=True)
    programs += ["".join(lines[:n] + lines[n + 1:]) for n in range(len(lines))]  # a line left out: some do not parse
    programs += ["".join(lines[n:] + lines[:n]) for n in range(len(lines))]
    for code in programs * 2:  # the second time, every statement after a program's first is one seen before
        static._parsed.cache_clear()
        parsed = static._parsed(code)
        try:
            expected = _reference_fingerprint(code)
        except SyntaxError:
            assert parsed.fingerprint is None
            continue
        import ast

        assert parsed.fingerprint == expected, code
        assert parsed.names == frozenset(static._top_level_names(ast.parse(code))), code
    assert static._statements  # the statements were kept (else this test proves nothing)


def test_a_tasks_paths_are_resolved_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evoforge.task.loader import load_task

    task = load_task(make_task(tmp_path / "task"))
    resolved: list[Path] = []
    real = Path.resolve

    def resolve(self: Path, *args: Any, **kwargs: Any) -> Path:
        resolved.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "resolve", resolve)
    first = (task.evaluator_path, task.private_paths, task.program_name)
    assert resolved and first[0] is not None and first[0] in first[1]
    before = len(resolved)
    for _ in range(3):  # each stage asks again
        assert (task.evaluator_path, task.private_paths, task.program_name) == first
    assert len(resolved) == before


def test_each_variable_name_is_judged_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from evoforge.experiment import sandbox

    monkeypatch.setenv("EVOFORGE_COST_API_KEY", "s3cret")
    monkeypatch.setenv("EVOFORGE_COST_PLAIN", "kept")
    first = sandbox.child_env({"EVOFORGE_STAGE": "main"})
    assert "EVOFORGE_COST_API_KEY" not in first and first["EVOFORGE_COST_PLAIN"] == "kept"
    judged = sandbox._secret.cache_info().misses
    for _ in range(3):  # each stage builds its environment again
        assert sandbox.child_env({"EVOFORGE_STAGE": "main"}) == first
    assert sandbox._secret.cache_info().misses == judged


def test_a_trial_started_ahead_is_evaluated_without_resolving_or_checking_it_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`evaluate` of a trial `start_ahead` wrote, checked and started (while the next one waits started ahead too, as
    in a run), and the loop's `drop_ahead` after it: no path resolved (a realpath walks every folder of it), no
    static check of the same program."""
    import asyncio

    from evoforge.experiment import Engineer, engineer
    from evoforge.task.loader import load_task

    calls: Counter[str] = Counter()
    real_resolve, real_check = Path.resolve, engineer.check_static

    def resolve(self: Path, *args: Any, **kwargs: Any) -> Path:
        calls["resolve"] += 1
        return real_resolve(self, *args, **kwargs)

    def check_static(*args: Any) -> Any:
        calls["check_static"] += 1
        return real_check(*args)

    monkeypatch.setattr(engineer, "check_static", check_static)
    ahead = Engineer(load_task(make_task(tmp_path / "task")))
    trials = [tmp_path / "run" / "trials" / f"{n:04d}" for n in (1, 2)]

    async def scenario() -> Any:
        for n, folder in enumerate(trials):
            await ahead.start_ahead(f"x = {n}.0\n", folder)
        monkeypatch.setattr(Path, "resolve", resolve)
        calls.clear()
        outcome = await ahead.evaluate("x = 0.0\n", trials[0])
        await ahead.drop_ahead(trials[0])  # as the loop does once the trial is evaluated
        counted = dict(calls)
        monkeypatch.setattr(Path, "resolve", real_resolve)
        await ahead.drop_ahead(trials[1])
        return outcome, counted

    outcome, counted = asyncio.run(scenario())
    assert outcome.score is not None, outcome
    assert counted.get("resolve", 0) == 0 and counted.get("check_static", 0) == 0, counted
    assert not ahead._ahead


def _counted_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[Path]:
    """Counts of `Path.read_bytes` by file from now on (how the evaluator seal reads the files it vouches for)."""
    reads: Counter[Path] = Counter()
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        reads[self] += 1
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    return reads


def test_an_unchanged_evaluator_is_not_read_again_at_each_stage(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The seal's check reads the evaluator again only when its status changed, or when that status cannot vouch
    for its content (a change within RACY_S of the read), or REHASH_S after the last read."""
    import os

    from evoforge.experiment import integrity
    from evoforge.experiment.integrity import EvaluatorChanged, EvaluatorSeal
    from evoforge.task.loader import load_task

    task = load_task(make_task(tmp_path / "task"))
    evaluator = task.evaluator_path
    assert evaluator is not None
    text = evaluator.read_text()
    clock = [os.stat(evaluator).st_ctime + 100.0]  # the file last changed long before: its status vouches for it
    monkeypatch.setattr(integrity.time, "time", lambda: clock[0])
    reads = _counted_reads(monkeypatch)
    seal = EvaluatorSeal.of(task)
    for _ in range(5):
        seal.check()
    assert reads[evaluator] == 2  # the seal's own, and the first check's
    clock[0] += integrity.REHASH_S + 1
    seal.check()
    assert reads[evaluator] == 3  # read again after REHASH_S, then vouched for again
    seal.check()
    assert reads[evaluator] == 3
    stat = os.stat(evaluator)
    evaluator.write_text(text.replace("3.0", "4.0"))  # same size; its times put back as they were
    os.utime(evaluator, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    clock[0] = os.stat(evaluator).st_ctime + 100.0
    with pytest.raises(EvaluatorChanged, match="evaluator.py changed"):
        seal.check()  # its change time moved on: read again, and found out


def test_a_recently_changed_evaluator_is_read_at_each_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Within RACY_S of a file's last change its times may not show the next change (same clock tick): read it."""
    from evoforge.experiment.integrity import EvaluatorSeal
    from evoforge.task.loader import load_task

    task = load_task(make_task(tmp_path / "task"))
    reads = _counted_reads(monkeypatch)
    seal = EvaluatorSeal.of(task)  # just written by make_task
    for _ in range(3):
        seal.check()
    assert reads[task.evaluator_path] == 4


def test_a_zygote_compiles_only_the_sealed_evaluator_and_once_per_content(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """What a warm child runs in place of the evaluator's file: the code of the content the job names by its sha256
    (the run's seal), compiled once; any other content, or a file that does not compile, is left to the child."""
    import hashlib

    from evoforge.experiment import zygote

    evaluator = tmp_path / "evaluator.py"
    source = "def evaluate(program_path):\n    return {'score': 1.0}\n"
    evaluator.write_text(source)
    sealed = hashlib.sha256(source.encode()).hexdigest()
    compiled: list[str] = []
    real_compile = compile

    def counting(data: bytes, path: str, *args: Any, **kwargs: Any) -> Any:
        compiled.append(path)
        return real_compile(data, path, *args, **kwargs)

    monkeypatch.setattr(zygote, "_compiled", {})
    monkeypatch.setitem(zygote.__dict__, "compile", counting)
    job = {"argv": [str(evaluator), str(tmp_path / "program.py")], "evaluator_sha256": sealed}
    first, again = zygote.precompiled(job), zygote.precompiled(job)
    assert first is not None and again is not None and first[1] is again[1] and compiled == [str(evaluator)]
    namespace: dict[str, Any] = {}
    exec(first[1], namespace)
    assert namespace["evaluate"]("p") == {"score": 1.0}
    evaluator.write_text(source.replace("1.0", "2.0"))  # not the sealed content any more
    assert zygote.precompiled(job) is None
    assert zygote.precompiled({**job, "evaluator_sha256": None}) is None
    broken = "def evaluate(:\n"
    evaluator.write_text(broken)
    assert zygote.precompiled({**job, "evaluator_sha256": hashlib.sha256(broken.encode()).hexdigest()}) is None


@BWRAP
def test_a_zygote_keeps_in_its_bounding_set_only_the_two_capabilities_it_uses(tmp_path: Path) -> None:
    """So each child drops two capabilities from its bounding set, not every one the kernel knows (a prctl each);
    the child still ends with none (tests/test_warm_jail.py)."""
    import asyncio

    from evoforge.experiment import Engineer
    from evoforge.experiment.child_jail import CAP_SETPCAP, CAP_SYS_ADMIN

    engineer = Engineer(make_jailed_task(tmp_path, IN_PROCESS))

    async def scenario() -> str:
        outcome = await engineer.evaluate("def result():\n    return {'score': 1.0}\n", trial_dir(tmp_path, 1))
        assert outcome.score == 1.0, outcome
        pool = engineer.executor.warm
        assert pool is not None and len(pool.idle) == 1
        pid1 = pool.idle[0].jail.pid1
        with open(f"/proc/{pid1}/status") as fh:
            return next(line.split()[1] for line in fh if line.startswith("CapBnd:"))

    assert int(asyncio.run(scenario()), 16) == 1 << CAP_SETPCAP | 1 << CAP_SYS_ADMIN
