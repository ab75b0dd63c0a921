"""The exploration engine: whitelist, UCB tree, offline loop on a process pool, resume, Dask."""
from __future__ import annotations

import json
import math
import signal

import pytest

from metabolism.cli import main
from metabolism.explore import ExploreSettings, Explorer, Param, Rejected, SearchSpace, Tree
from metabolism.explore.executor import Job, SerialExecutor, run_job
from metabolism.explore.proposers import Proposal, RoundContext
from metabolism.explore.record import ExplorationLog, read_log
from metabolism.explore.space import build_config, format_override
from metabolism.explore.tree import Node

TINY = ["network.n_metabolites=12", "network.n_reactions=18", "simulation.n_frames=300", "training.steps=30",
        "training.lbfgs_steps=5", "training.batch_frames=64", "training.lbfgs_frames=150", "model.hidden=8",
        "evaluation.max_horizon=50", "evaluation.stats_steps=50", "evaluation.n_test_initial=1",
        # speed only: fewer integrator substeps and a coarser evaluation grid
        "simulation.substeps=2", "evaluation.rollout_substeps=1", "evaluation.grid_points=50"]
SPACE = [{"key": "training.lr", "kind": "float", "low": 1e-3, "high": 1e-2, "log": True},
         {"key": "model.hidden", "kind": "int", "low": 4, "high": 12},
         {"key": "training.steps", "kind": "int", "low": 20, "high": 40},
         {"key": "model.sub_input", "kind": "choice", "choices": ["log", "linear"]}]


def tiny_settings(**kw) -> ExploreSettings:
    return ExploreSettings.for_regime("oscillatory", overrides=TINY, seed=3, space=SPACE, **kw)


def fake_job(calls: list | None = None):
    """A job function that does not train: the score is a smooth function of lr and hidden."""
    def job(j: Job) -> dict:
        if calls is not None:
            calls.append(j.iteration)
        ov = dict(o.split("=", 1) for o in j.overrides)
        lr, hidden = float(ov.get("training.lr", 2e-3)), int(ov.get("model.hidden", 8))
        s = 1 - (math.log10(lr) + 2.5) ** 2 - 0.01 * (hidden - 6) ** 2
        return {"iteration": j.iteration, "status": "ok", "score": s, "wall_time": 0.0, "error": None,
                "metrics": {"rate_constants": {"r2_log_k": s}}}
    return job


# ---- whitelist and schema -------------------------------------------------------------------------------------
def test_default_whitelist_is_in_the_schema_and_rejects_the_rest():
    space = SearchSpace()
    assert {"training.lr", "training.ridge_start", "model.sub_input", "model.embedding_dim"} <= set(space.keys())
    assert space.check({"training.lr": 3e-3, "model.hidden": 16.0}) == {"training.lr": 3e-3, "model.hidden": 16}
    for bad, match in [({"training.grad_clip": 2.0}, "not in the whitelist"), ({"training.lr": 1.0}, "outside"),
                       ({"model.sub_input": "cubic"}, "not one of"), ({"model.hidden": 7.5}, "not an integer"),
                       ({"training.lr": "fast"}, "not a number"), ({}, "non-empty")]:
        with pytest.raises(Rejected, match=match):
            space.check(bad)
    with pytest.raises(ValueError, match="not in the RunConfig schema"):
        SearchSpace([Param("training.learning_rate", "float", 1e-4, 1e-2)])


@pytest.mark.parametrize("value", [1e-05, 0.001, 2.5e-12, 1e20, 300, "log", 0.0])
def test_overrides_parse_back_exactly(value):
    key, text = format_override("training.lr", value).split("=", 1)
    import yaml
    assert yaml.safe_load(text) == value and key == "training.lr"


def test_vetting_rejects_and_logs_schema_failures_duplicates_and_bad_parents():
    s = ExploreSettings.for_regime("oscillatory", overrides=TINY,
                                   space=SPACE + [{"key": "training.k_average", "kind": "float", "low": 0.01, "high": 2}])
    space = SearchSpace.from_specs(s.space)
    base_values = space.values_of(build_config(s.base_data, s.base_overrides))
    tree = Tree()
    tree.add(Node(0, None, {}, {}, "baseline"))
    tree.finish(0, "ok", 0.5)
    logged = []
    ctx = RoundContext(round=1, roles=["exploit"], tree=tree, iterations=[], space=space, base_data=s.base_data,
                       base_overrides=s.base_overrides, base_values=base_values, seed=None, memory="",
                       score_key=s.score_key, maximize=True, ucb_c=0.5, explore_factor=4, explore_seed=0,
                       log=logged.append, proposer_name="test")
    assert ctx.vet(Proposal(0, {"training.k_average": 1.5}, "exploit")) is None      # whitelisted, schema says <= 1
    assert ctx.vet(Proposal(0, {"model.hidden": 8}, "exploit")) is None              # no change
    assert ctx.vet(Proposal(7, {"model.hidden": 6}, "exploit")) is None              # unknown parent
    assert ctx.vet(Proposal(0, {"training.grad_clip": 2.0}, "exploit")) is None      # not whitelisted
    cand = ctx.vet(Proposal(0, {"model.hidden": 6}, "exploit"))
    assert cand is not None and cand.overrides[-1] == "model.hidden=6" and cand.params == {"model.hidden": 6}
    assert ctx.vet(Proposal(0, {"model.hidden": 6}, "exploit")) is None              # duplicate in the round
    reasons = [r["reason"] for r in logged]
    assert all(r["event"] == "rejected" for r in logged) and len(reasons) == 5
    assert "k_average" in reasons[0] and "changes nothing" in reasons[1] and "parent 7" in reasons[2]
    assert "not in the whitelist" in reasons[3] and "duplicate" in reasons[4]


# ---- UCB tree -------------------------------------------------------------------------------------------------
def test_ucb_rule_is_the_documented_one():
    t = Tree(c=1.0, floor=-1.0)
    for i, parent, score, status in [(0, None, 0.2, "ok"), (1, 0, 0.6, "ok"), (2, 0, -5.0, "ok"),
                                     (3, 1, None, "failed"), (4, 1, 0.8, "ok")]:
        t.add(Node(i, parent, {}, {}))
        t.finish(i, status, score)
    # utilities: 0.2, 0.6, -1 (clipped), -1 (failed), 0.8
    assert t.stats(0) == (5, pytest.approx((0.2 + 0.6 - 1 - 1 + 0.8) / 5))
    assert t.stats(1) == (3, pytest.approx((0.6 - 1 + 0.8) / 3))
    assert t.ucb(1) == pytest.approx(0.4 / 3 + math.sqrt(math.log(5) / 3))
    assert t.ucb(4) == pytest.approx(0.8 + math.sqrt(math.log(3) / 1))
    assert t.ucb(0) == pytest.approx(-0.08 + math.sqrt(math.log(5) / 5))
    assert t.select() == 4 and t.best().id == 4
    assert t.select(c=0.0) == 4
    from collections import Counter
    virtual = Counter({4: 3})  # three pending children of 4 lower its bonus
    assert t.ucb(4, virtual=virtual) == pytest.approx(0.8 + math.sqrt(math.log(6) / 4))


# ---- the offline loop on the local process pool ---------------------------------------------------------------
def test_offline_two_rounds_on_a_process_pool(tmp_path):
    lines: list[str] = []
    settings = tiny_settings(budget=4, slots=2, workers=2)
    result = Explorer(tmp_path, settings, report=lines.append).run()

    records = read_log(tmp_path / "log.jsonl")
    finished = [r for r in records if r["event"] == "finished"]
    assert sorted(r["iteration"] for r in finished) == [0, 1, 2, 3]
    assert [r["iteration"] for r in records if r["event"] == "started"] == [0, 1, 2, 3]
    for r in finished:
        for key in ("round", "role", "parent", "mutation", "overrides", "metrics", "score", "wall_time", "status",
                    "proposer", "reasoning"):
            assert key in r
        assert set(r["mutation"]) <= {p["key"] for p in SPACE}
        assert r["overrides"][:len(TINY)] == TINY
        if r["status"] == "ok":
            assert r["score"] == r["metrics"]["rate_constants"]["r2_log_k"]
            assert (tmp_path / r["run_dir"] / "metrics.json").exists()
    assert [r["round"] for r in finished if r["iteration"] in (0, 1)] == [0, 0]
    by_id = {r["iteration"]: r for r in finished}
    assert by_id[0]["role"] == "baseline" and by_id[0]["parent"] is None
    assert by_id[1]["proposer"] == "optuna-tpe+ucb" and by_id[2]["round"] == 1
    assert {by_id[2]["role"], by_id[3]["role"]} == {"explore", "test-a-principle"}

    progress = [line for line in lines if line.startswith("it ")]
    assert len(progress) == 4 and all("best" in line for line in progress)
    memory = (tmp_path / "memory.md").read_text()
    for section in ("## Established principles", "## Refuted hypotheses", "## Open questions"):
        assert section in memory
    tree = json.loads((tmp_path / "tree.json").read_text())
    assert "sqrt(ln N(v) / n(v))" in tree["rule"] and len(tree["nodes"]) == 4

    assert result["counts"]["iterations"] == 4 and result["default"]["iteration"] == 0
    assert [h["iteration"] for h in result["history"]] == [0, 1, 2, 3]
    assert result["memory"] == memory and result["tree"]["nodes"][0]["depth"] == 0
    if result["best"] is not None:
        assert result["best"]["lineage"][0] == 0

    # finished iterations are never re-run: a second call with the same budget does nothing
    Explorer(tmp_path, report=None).run()
    assert len([r for r in read_log(tmp_path / "log.jsonl") if r["event"] == "started"]) == 4


# ---- resume ---------------------------------------------------------------------------------------------------
class Interrupting:
    """Runs jobs serially and raises KeyboardInterrupt (a simulated Ctrl-C/kill) before recording result `after`."""

    def __init__(self, job, after: int):
        self.inner, self.after, self.n = SerialExecutor(job), after, 0

    def run(self, jobs):
        for res in self.inner.run(jobs):
            if self.n == self.after:
                raise KeyboardInterrupt
            self.n += 1
            yield res

    def close(self, cancel: bool = False) -> None:
        pass


def test_resume_after_an_interruption_loses_nothing_and_runs_nothing_twice(tmp_path):
    calls: list[int] = []
    settings = tiny_settings(budget=8, slots=2, executor="serial")
    # rounds 0 and 1 (ids 0-3) complete; in round 2 (ids 4, 5) the kill comes after id 4 ran but before it was logged
    with pytest.raises(KeyboardInterrupt):
        Explorer(tmp_path, settings, executor=Interrupting(fake_job(calls), after=4), report=None).run()
    records = read_log(tmp_path / "log.jsonl")
    started = {r["iteration"] for r in records if r["event"] == "started"}
    done = {r["iteration"] for r in records if r["event"] == "finished"}
    assert started == {0, 1, 2, 3, 4, 5} and done == {0, 1, 2, 3}
    assert calls == [0, 1, 2, 3, 4]

    calls.clear()
    lines: list[str] = []
    (tmp_path / "explore.json").unlink()      # the settings are recovered from the log's session record
    result = Explorer(tmp_path, executor=SerialExecutor(fake_job(calls)), report=lines.append).run()
    assert result["settings"]["budget"] == 8 and (tmp_path / "explore.json").exists()
    assert calls[:2] == [4, 5] and calls[2:] == [6, 7]          # the interrupted ones once, then the last round
    assert any("re-running 2 interrupted" in line for line in lines)
    records = read_log(tmp_path / "log.jsonl")
    finished = [r["iteration"] for r in records if r["event"] == "finished"]
    assert sorted(finished) == list(range(8))                  # nothing lost, nothing recorded twice
    reruns = [r for r in records if r["event"] == "started" and r["iteration"] in (4, 5)]
    assert [r["attempt"] for r in reruns] == [1, 1, 2, 2]
    first = {r["iteration"]: r for r in reruns if r["attempt"] == 1}
    second = {r["iteration"]: r for r in reruns if r["attempt"] == 2}
    for i in (4, 5):
        assert first[i]["mutation"] == second[i]["mutation"] and first[i]["overrides"] == second[i]["overrides"]
    assert result["counts"] == {**result["counts"], "iterations": 8, "unfinished": 0}


def test_an_iteration_interrupted_twice_is_recorded_failed_not_rerun(tmp_path):
    calls: list[int] = []
    settings = tiny_settings(budget=2, slots=2, executor="serial")
    with pytest.raises(KeyboardInterrupt):   # round 0: baseline logged, proposal 1 interrupted
        Explorer(tmp_path, settings, executor=Interrupting(fake_job(calls), after=1), report=None).run()
    with pytest.raises(KeyboardInterrupt):   # the re-run of 1 is interrupted again
        Explorer(tmp_path, executor=Interrupting(fake_job(calls), after=0), report=None).run()
    # a crash mid-write leaves a torn line: it is cut off, not parsed
    with open(tmp_path / "log.jsonl", "a") as fh:
        fh.write('{"event": "finished", "iter')
    calls.clear()
    Explorer(tmp_path, executor=SerialExecutor(fake_job(calls)), report=None).run()
    assert calls == []
    records = read_log(tmp_path / "log.jsonl")
    last = [r for r in records if r["event"] == "finished" and r["iteration"] == 1]
    assert len(last) == 1 and last[0]["status"] == "failed" and "interrupted twice" in last[0]["error"]
    assert (tmp_path / "log.jsonl").read_text().endswith("\n")


def test_log_lines_are_complete_json(tmp_path):
    log = ExplorationLog(tmp_path / "l.jsonl")
    log.append({"event": "x", "value": float("nan"), "n": 1})
    assert read_log(tmp_path / "l.jsonl")[0]["value"] is None


# ---- executors ------------------------------------------------------------------------------------------------
def test_failed_run_is_a_result_not_a_crash(tmp_path):
    s = tiny_settings()
    res = run_job(Job(iteration=9, base_data=s.base_data, overrides=tuple(TINY + ["training.lr=-1"]), seed=3,
                      run_dir=str(tmp_path / "r"), score_key=s.score_key, threads=1))
    assert res["status"] == "failed" and "training.lr" in res["error"] and res["wall_time"] >= 0


def test_a_run_over_its_time_limit_is_stopped_and_recorded_failed(tmp_path):
    s = tiny_settings()
    job = Job.of(s.model_copy(update={"job_timeout": 3.0, "threads_per_job": 1}), 4,
                 TINY + ["training.steps=100000"], tmp_path / "r")
    assert (job.timeout, job.threads, job.seed) == (3.0, 1, 3)
    res = run_job(job)
    assert res["status"] == "failed" and "time limit of 3 s" in res["error"]
    assert 3.0 <= res["wall_time"] < 30.0
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0), "the timer must be cleared after the job"


def test_job_timeout_reaches_the_jobs(tmp_path):
    calls: list = []

    def job(j: Job) -> dict:
        calls.append(j.timeout)
        return fake_job()(j)
    ex = Explorer(tmp_path / "ex", tiny_settings(budget=2, slots=2, job_timeout=120.0),
                  executor=SerialExecutor(job))
    ex.run()
    assert calls == [120.0, 120.0]


def test_dask_local_cluster_is_selected_by_config(tmp_path):
    pytest.importorskip("distributed")
    settings = tiny_settings(budget=2, slots=2, executor="dask",
                             dask_cluster={"n_workers": 1, "processes": False, "threads_per_worker": 2})
    lines: list[str] = []
    result = Explorer(tmp_path, settings, report=lines.append).run()
    records = [r for r in read_log(tmp_path / "log.jsonl") if r["event"] == "finished"]
    assert sorted(r["iteration"] for r in records) == [0, 1]
    assert all(r["status"] == "ok" and isinstance(r["score"], float) for r in records)
    assert result["counts"]["ok"] == 2 and len([l for l in lines if l.startswith("it ")]) == 2


# ---- command line ---------------------------------------------------------------------------------------------
def test_cli_explore_and_summary(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(json.dumps(SPACE))
    args = ["explore", "--regime", "oscillatory", "--budget", "1", "--slots", "2", "--executor", "serial",
            "--out", str(tmp_path / "x"), "--space", str(space), "--seed", "3"]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "it    0  round   0  baseline" in out and '"best_iteration": 0' in out
    assert main(["explore", "--out", str(tmp_path / "x"), "--summary"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["iterations"] == 1 and summary["default"]["score"] == summary["best"]["score"]
    # a different base in the same directory is refused
    assert main(args[:-2] + ["--set", "model.hidden=9"]) == 2
