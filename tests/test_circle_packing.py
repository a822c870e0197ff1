"""Tests of the circle-packing example: its seed program and its strict evaluator."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from helpers import SLACK_S, load_module

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "circle_packing"


@pytest.fixture(scope="module")
def evaluator() -> ModuleType:
    return load_module(EXAMPLE / "evaluator.py", "circle_packing_evaluator")


def grid_packing() -> str:
    """A valid packing of 26 circles: a 5 x 5 grid of radius 0.1 minus one, plus two small circles."""
    return (
        "def construct_packing():\n"
        "    centers = [(0.1 + 0.2 * i, 0.1 + 0.2 * j) for i in range(5) for j in range(5)][:24]\n"
        "    radii = [0.1] * 24\n"
        "    centers += [(0.85, 0.85), (0.95, 0.95)]\n"
        "    radii += [0.04, 0.04]\n"
        "    return centers, radii\n"
    )


def write(tmp_path: Path, source: str) -> str:
    path = tmp_path / "candidate.py"
    path.write_text(source, encoding="utf-8")
    return str(path)


def assert_invalid(result: dict, reason: str) -> None:
    assert result["score"] == 0.0
    assert result["valid"] == 0
    assert reason in result["reason"], result["reason"]


def test_seed_program_is_valid_and_leaves_room(evaluator: ModuleType) -> None:
    result = evaluator.evaluate(str(EXAMPLE / "initial_program.py"))
    assert result["valid"] == 1, result
    assert 1.0 < result["score"] < 1.5
    assert result["sum_radii"] == result["score"]
    assert result["n_circles"] == 26
    assert 0.0 < result["min_radius"] <= result["score"] / 26


def test_seed_runs_standalone_and_tuned_constants_score_higher() -> None:
    seed = load_module(EXAMPLE / "initial_program.py", "circle_packing_seed")
    centers, radii = seed.construct_packing()
    assert len(centers) == 26 and len(radii) == 26
    base = float(sum(radii))
    seed.MARGIN_X, seed.MARGIN_Y = 0.1, 0.1
    tuned = float(sum(seed.construct_packing()[1]))
    assert tuned > base + 0.8


def test_valid_packing_scores_its_sum(evaluator: ModuleType, tmp_path: Path) -> None:
    result = evaluator.evaluate(write(tmp_path, grid_packing()))
    assert result["valid"] == 1, result
    assert result["score"] == pytest.approx(24 * 0.1 + 0.08)
    assert result["min_radius"] == pytest.approx(0.04)


def test_numpy_arrays_and_chatty_programs_are_accepted(evaluator: ModuleType, tmp_path: Path) -> None:
    source = grid_packing().replace(
        "    return centers, radii\n",
        "    print('working...')\n    import numpy as np\n    return np.array(centers), np.array(radii)\n",
    )
    result = evaluator.evaluate(write(tmp_path, source))
    assert result["valid"] == 1, result


def test_overlap_scores_zero(evaluator: ModuleType, tmp_path: Path) -> None:
    source = grid_packing().replace("(0.95, 0.95)]", "(0.9, 0.9)]").replace("0.04, 0.04]", "0.04, 0.06]")
    result = evaluator.evaluate(write(tmp_path, source))
    assert_invalid(result, "overlap: circles 24 and 25 overlap by 0.0293")


def test_tolerance_is_at_most_1e9(evaluator: ModuleType, tmp_path: Path) -> None:
    inside = grid_packing().replace("radii += [0.04, 0.04]", "radii += [0.04, 0.05 + 5e-10]")
    assert evaluator.evaluate(write(tmp_path, inside))["valid"] == 1
    beyond = grid_packing().replace("radii += [0.04, 0.04]", "radii += [0.04, 0.05 + 2e-9]")
    assert_invalid(evaluator.evaluate(write(tmp_path, beyond)), "outside the square: circle 25")


def test_outside_square_scores_zero(evaluator: ModuleType, tmp_path: Path) -> None:
    source = grid_packing().replace("(0.95, 0.95)]", "(0.97, 0.95)]")
    assert_invalid(evaluator.evaluate(write(tmp_path, source)), "outside the square: circle 25")


def test_nan_radius_scores_zero(evaluator: ModuleType, tmp_path: Path) -> None:
    source = grid_packing().replace("radii += [0.04, 0.04]", "radii += [0.04, float('nan')]")
    assert_invalid(evaluator.evaluate(write(tmp_path, source)), "bad radius 25")


def test_non_positive_radius_and_bad_center_score_zero(evaluator: ModuleType, tmp_path: Path) -> None:
    source = grid_packing().replace("radii += [0.04, 0.04]", "radii += [0.04, 0.0]")
    assert_invalid(evaluator.evaluate(write(tmp_path, source)), "radii must be > 0")
    source = grid_packing().replace("(0.95, 0.95)]", "(0.95, float('inf'))]")
    assert_invalid(evaluator.evaluate(write(tmp_path, source)), "bad center 25")
    source = grid_packing().replace("(0.95, 0.95)]", "(0.95, 0.95, 0.0)]")
    assert_invalid(evaluator.evaluate(write(tmp_path, source)), "bad center 25")


def test_wrong_count_scores_zero(evaluator: ModuleType, tmp_path: Path) -> None:
    source = grid_packing().replace("    return centers, radii", "    return centers[:25], radii[:25]")
    result = evaluator.evaluate(write(tmp_path, source))
    assert_invalid(result, "wrong count: expected 26 centers and radii, got 25 and 25")


def test_crashing_candidate_reports_error_type_and_last_line(evaluator: ModuleType, tmp_path: Path) -> None:
    source = "def construct_packing():\n    raise ValueError('no idea how to pack')\n"
    result = evaluator.evaluate(write(tmp_path, source))
    assert_invalid(result, "ValueError: no idea how to pack")
    assert result["reason"].startswith("crash")
    assert_invalid(evaluator.evaluate(write(tmp_path, "def construct(:\n")), "SyntaxError")
    assert_invalid(evaluator.evaluate(write(tmp_path, "X = 1\n")), "AttributeError")


def test_hanging_candidate_times_out(evaluator: ModuleType, tmp_path: Path) -> None:
    source = "import time\n\ndef construct_packing():\n    while True:\n        time.sleep(0.05)\n"
    started = time.monotonic()
    result = evaluator.evaluate(write(tmp_path, source), timeout_s=1.0)
    assert time.monotonic() - started < 1.0 + SLACK_S  # its timeout stopped it: not a hang
    assert_invalid(result, "timeout: construct_packing() did not return within 1 s")


def test_timeout_env_override(evaluator: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(evaluator.TIMEOUT_ENV, "0.5")
    source = "import time\n\ndef construct_packing():\n    time.sleep(30)\n"
    assert_invalid(evaluator.evaluate(write(tmp_path, source)), "within 0.5 s")


def test_candidate_does_not_run_in_the_evaluator_process(evaluator: ModuleType, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid.txt"
    source = f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n" + grid_packing()
    result = evaluator.evaluate(write(tmp_path, source))
    assert result["valid"] == 1
    assert int(pid_file.read_text()) != os.getpid()
    assert "candidate" not in sys.modules
