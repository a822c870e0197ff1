"""The dashboard's JSON API (FastAPI's test client) over a record made by a real offline run: what each view is
given matches the record, the record is only read, unknown runs/trials/files are 404, the token is checked on
every request, live events carry new trials, and the tree layout holds 2,000 trials."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the dashboard extra is not installed: pip install -e '.[dashboard]'")

from dashboard_run import HOSTILE_MOTIVATION, TRIALS, add_plain_trial, make_run  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from evoforge.dashboard import create_app, resolve_sources  # noqa: E402
from evoforge.dashboard.app import _trial_events  # noqa: E402
from evoforge.dashboard.overview import best_path, tree_layout  # noqa: E402
from evoforge.dashboard.security import COOKIE, token_for  # noqa: E402
from evoforge.dashboard.static_files import INDEX, STATIC, package_file  # noqa: E402
from evoforge.errors import RunError  # noqa: E402
from evoforge.memory.record import Record  # noqa: E402
from evoforge.models import Direction, TrialStatus  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("dash-api"))


@pytest.fixture(scope="module")
def client(run_dir: Path) -> TestClient:
    return TestClient(create_app(resolve_sources([run_dir])))


def test_overview_matches_the_record(client: TestClient, run_dir: Path) -> None:
    with Record.for_run_dir(run_dir, read_only=True) as record:
        counts, best = record.counts(), record.best(Direction.MAXIMIZE)
        ids = [t.id for t in record.trials()]
    o = client.get("/api/runs/0/overview").json()
    assert o["counts"] == counts and o["total"] == TRIALS + 1
    assert counts["failed"] >= 1  # the hostile trial at least: the status colours have two kinds to show
    assert (o["best_score"], o["best_trial"]) == (best.score, best.id)
    assert [t["id"] for t in o["trials"]] == ids
    curve = [p["best"] for p in o["best_so_far"]]
    assert curve == sorted(curve) and curve[-1] == best.score  # maximize: the best so far never goes down
    assert o["evaluation_seconds"] > 0 and o["llm_calls"] == 1
    with Record.for_run_dir(run_dir, read_only=True) as record:
        champion = record.champion()
    assert champion is not None and o["champion"]["trial"] == champion.trial_id
    assert (o["champion"]["mean"], o["champion"]["evaluations"]) == (champion.mean, champion.evaluations)


def test_lineage_is_the_parent_tree_with_the_path_to_the_champion(client: TestClient, run_dir: Path) -> None:
    d = client.get("/api/runs/0/lineage").json()
    with Record.for_run_dir(run_dir, read_only=True) as record:
        trials = {t.id: t for t in record.trials()}
        champion = record.champion()
    assert {n["id"] for n in d["nodes"]} == set(trials)
    for node in d["nodes"]:
        parents = trials[node["id"]].parent_ids
        assert node["parent"] == (parents[0] if parents else None)
        if node["parent"] is not None:  # a child sits one generation under its parent
            assert node["depth"] == next(n["depth"] for n in d["nodes"] if n["id"] == node["parent"]) + 1
    path = d["best_path"]  # the path from the seed to the champion
    assert champion is not None and path[-1] == champion.trial_id == d["best_trial"] and not trials[path[0]].parent_ids
    assert all(trials[child].parent_ids[0] == parent for parent, child in zip(path, path[1:], strict=False))


def test_tree_layout_holds_a_2000_deep_chain_and_a_2000_wide_fan() -> None:
    chain = [{"id": i, "parents": [i - 1] if i > 1 else []} for i in range(1, 2001)]
    place = tree_layout(chain)  # no recursion limit: a chain as deep as the run is long
    assert place[2000] == (0.0, 1999) and best_path(chain, 2000) == list(range(1, 2001))
    fan = [{"id": 1, "parents": []}] + [{"id": i, "parents": [1]} for i in range(2, 2001)]
    place = tree_layout(fan)
    leaves = sorted(place[i][0] for i in range(2, 2001))
    assert leaves == [float(x) for x in range(1999)]  # one slot each: no two nodes drawn on top of each other
    assert place[1] == (999.0, 0)  # the parent over the middle of its children


def test_trial_page_has_diff_outcome_curves_and_learning(client: TestClient, run_dir: Path) -> None:
    o = client.get("/api/runs/0/overview").json()
    child = [t for t in o["trials"] if t["parents"] and t["status"] == "succeeded"  # late: knowledge exists;
             and t["reused_from"] is None][-1]  # evaluated (a reused duplicate has no curves of its own)
    t = client.get(f"/api/runs/0/trials/{child['id']}").json()
    assert t["diff"].startswith("--- a/") and t["parent"]["id"] == t["parent_ids"][0]
    assert len(t["curves"]["main/loss"]) == 6 and len(t["parent"]["curves"]["main/loss"]) == 6
    assert t["stages"][0]["status"] == "succeeded" and t["digest"] and t["lessons"] and t["knowledge_shown"]
    assert "a warning of the evaluator's" in t["logs"]["stderr.log"] and "evaluating x =" in t["logs"]["stdout.log"]
    hostile = client.get(f"/api/runs/0/trials/{TRIALS + 1}").json()
    assert hostile["error_class"] == "evaluation_error" and "went wrong" in hostile["error_message"]
    seed = client.get("/api/runs/0/trials/1").json()
    assert seed["parent"] is None and TRIALS + 1 in seed["children"]
    assert client.get("/api/runs/0/trials/two").status_code == 422


def test_hostile_text_comes_back_as_data(client: TestClient) -> None:
    t = client.get(f"/api/runs/0/trials/{TRIALS + 1}").json()
    assert t["motivation"] == HOSTILE_MOTIVATION and t["llm_calls"][0]["response"].startswith("<script>")


def test_knowledge_is_searchable(client: TestClient) -> None:
    everything = client.get("/api/runs/0/knowledge").json()
    assert everything["available"] and everything["total"] == len(everything["items"]) > 0
    word = everything["items"][0]["title"].split()[0].lower()
    found = client.get("/api/runs/0/knowledge", params={"q": word}).json()
    assert 0 < found["matched"] <= found["total"]
    assert all(word in (i["title"] + i["content"] + i["trigger"]).lower() for i in found["items"])
    assert client.get("/api/runs/0/knowledge", params={"q": "zzz-no-such-word"}).json()["matched"] == 0
    assert all("support" in i and "provenance" in i for i in everything["items"])


def test_a_shared_knowledge_base_is_the_one_the_run_was_given(run_dir: Path, tmp_path: Path) -> None:
    """A run started with --kb reads its knowledge from there (the record's config keeps the location); a run whose
    base is gone says so instead of failing."""
    import sqlite3

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shared = tmp_path / "shared.db"
    (copy / "knowledge.db").rename(shared)
    client = TestClient(create_app(resolve_sources([copy])))
    assert client.get("/api/runs/0/knowledge").json() == {"available": False, "items": [], "total": 0}
    db = sqlite3.connect(copy / "record.db")
    with db:
        db.execute("update runs set config = json_set(config, '$.settings.kb', ?)", (str(shared),))
    db.close()
    found = client.get("/api/runs/0/knowledge").json()
    assert found["available"] and found["total"] > 0


def test_search_space_and_comparison(client: TestClient, run_dir: Path) -> None:
    s = client.get("/api/runs/0/search-space").json()
    assert s["features"][0]["name"] == "code_length" and s["placed"] >= 1
    assert sum(c["count"] for c in s["cells"]) == s["placed"]
    two = TestClient(create_app(resolve_sources([run_dir, f"sqlite:///{run_dir / 'record.db'}"])))
    runs = two.get("/api/compare").json()["runs"]
    assert [r["run"] for r in runs] == ["0", "1"] and runs[0]["curve"] == runs[1]["curve"]
    assert runs[0]["improvements"] >= 1 and runs[0]["cost_per_improvement_usd"] == 0.0
    assert two.get("/api/compare", params={"run": ["1"]}).json()["runs"][0]["label"].startswith("sqlite:///")


def test_reading_writes_nothing(client: TestClient, run_dir: Path) -> None:
    def digest() -> str:
        return hashlib.sha256((run_dir / "record.db").read_bytes()).hexdigest()

    before = digest()
    for path in ("/api/runs", "/api/runs/0/overview", "/api/runs/0/lineage", "/api/runs/0/trials/2",
                 "/api/runs/0/knowledge", "/api/runs/0/search-space", "/api/compare"):
        assert client.get(path).status_code == 200, path
    assert digest() == before


@pytest.mark.parametrize("path", ["/api/runs/9/overview", "/api/runs/0/trials/999", "/static/app.py",
                                  "/static/..%2f__init__.py", "/static/%2e%2e/app.py", "/static/index.html/..",
                                  "/nope"])
def test_no_request_reaches_a_file_by_its_path(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_page_and_scripts_are_served_without_any_cdn(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    for name in [INDEX, *STATIC]:
        text = package_file(name).decode()
        assert not re.search(r"https?://", text), f"{name} refers to another site"
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, name
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    schema = client.get("/openapi.json").json()
    assert "/api/runs/{run}/trials/{trial_id}" in schema["paths"]


def test_every_request_checks_the_token(run_dir: Path) -> None:
    guarded = TestClient(create_app(resolve_sources([run_dir]), token="s3cret"))
    for path in ("/", "/static/app.js", "/api/runs", "/api/runs/0/overview", "/openapi.json"):
        assert guarded.get(path).status_code == 401, path
    assert guarded.get("/api/runs", params={"token": "wrong"}).status_code == 401
    assert guarded.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    first = guarded.get("/", params={"token": "s3cret"})
    assert first.status_code == 200 and guarded.cookies.get(COOKIE) == "s3cret"
    assert guarded.get("/static/app.js").status_code == 200  # the page's own requests carry the cookie


def test_a_host_beyond_the_loopback_gets_a_token() -> None:
    assert token_for("127.0.0.1", None) == (None, False) and token_for("localhost", None) == (None, False)
    assert token_for("::1", None) == (None, False)
    token, generated = token_for("0.0.0.0", None)
    assert generated and token and len(token) >= 24
    assert token_for("192.168.1.5", "given") == ("given", False)


def test_runs_in_folders_of_the_same_name_are_told_apart(run_dir: Path, tmp_path: Path) -> None:
    twin = tmp_path / "elsewhere" / run_dir.name
    shutil.copytree(run_dir, twin)
    labels = [s.label for s in resolve_sources([run_dir, twin])]
    assert labels == [str(run_dir.resolve()), str(twin.resolve())]
    assert resolve_sources([run_dir])[0].label == run_dir.name


def test_a_folder_without_a_record_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no record at"):
        resolve_sources([tmp_path])


class _Listener:
    """A stand-in for the request of an events stream: listening for `polls` polls, then gone."""

    def __init__(self, polls: int) -> None:
        self.polls = polls

    async def is_disconnected(self) -> bool:
        self.polls -= 1
        return self.polls < 0


def test_live_events_carry_the_trials_a_running_loop_adds(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    source = resolve_sources([run_dir])[0]

    async def collect() -> list[str]:
        events: list[str] = []
        stream = _trial_events(source, _Listener(3), since=TRIALS + 1, poll_s=0.0)  # type: ignore[arg-type]
        events.append(await anext(stream))  # the first poll: where the run stands
        new_id = add_plain_trial(run_dir, "a trial added while the page watches")
        events.append(await anext(stream))
        async for more in stream:  # nothing changed since: the stream stays quiet until the listener leaves
            events.append(more)
        events.append(str(new_id))
        return events

    first, second, new_id = asyncio.run(collect())
    assert '"trials": []' in first and f'"total": {TRIALS + 1}' in first
    payload: dict[str, Any] = json.loads(second.split("data: ", 1)[1])
    assert [t["id"] for t in payload["trials"]] == [int(new_id)] and payload["trials"][0]["status"] == "rejected"
    assert payload["total"] == TRIALS + 2
    assert TrialStatus(payload["trials"][0]["status"]) is TrialStatus.REJECTED


def test_islands_come_from_the_trials_facts(tmp_path: Path) -> None:
    """Each pick's island and the ring migrations are facts on the trial rows (issue 12): a record that has them
    shows which island holds what. Trials 2 and 5 were picked on island 1, 3 and 4 on island 0; trial 4's pick made
    migration 1 (trial 5's carries it again), which moved trial 2 (the best) to island 0."""
    import sqlite3

    from recordfactory import make_record

    run_dir = make_record(tmp_path / "run")
    db = sqlite3.connect(run_dir / "record.db")
    with db:
        if "facts" not in {row[1] for row in db.execute("pragma table_info(trials)")}:
            db.execute("alter table trials add column facts json")
        migration = {"number": 1, "after": 3, "moves": [[0, 1, []], [1, 0, [2]]]}
        facts = {2: {"island": 1}, 3: {"island": 0}, 4: {"island": 0, "migration": migration},
                 5: {"island": 1, "migration": migration}}  # a migration rides on later picks until recorded
        for trial_id, value in facts.items():
            db.execute("update trials set facts = ? where id = ?", (json.dumps(value), trial_id))
        db.execute("update runs set config = json_set(config, '$.task_config.research', "
                   "json('{\"sampler\": \"islands\", \"islands\": {\"count\": 2}}'))")
    db.close()
    space = TestClient(create_app(resolve_sources([run_dir]))).get("/api/runs/0/search-space").json()
    islands = space["islands"]
    assert islands["from_facts"] and islands["count"] == 2 and islands["migrations"] == 1
    assert [(e["source"], e["target"], e["trials"]) for e in islands["events"]] == [(0, 1, []), (1, 0, [2])]
    zero, one = islands["islands"]
    assert (zero["members"], zero["migrants"], zero["best_trial"]) == (4, [2], 2)  # seed, 3, 4 and migrant 2
    assert (one["members"], one["migrants"], one["best_trial"]) == (3, [], 2)  # seed, 2, 5
    trial = TestClient(create_app(resolve_sources([run_dir]))).get("/api/runs/0/trials/5").json()
    assert trial["facts"]["island"] == 1
