"""The language-model proposers against a scripted local HTTP server (no network)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from metabolism.explore import ExploreSettings, Explorer
from metabolism.explore.executor import SerialExecutor
from metabolism.explore.llm import MalformedReply, parse_reply
from metabolism.explore.record import read_log

from test_explore import SPACE, TINY, fake_job


class Scripted:
    """A local chat server answering each request with the next scripted text, recording the requests."""

    def __init__(self, replies: list[str], kind: str):
        self.replies, self.kind, self.requests = list(replies), kind, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                text = owner.replies.pop(0) if owner.replies else "no more scripted replies"
                if owner.kind == "openai":
                    out = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
                else:
                    out = {"type": "message", "content": [{"type": "text", "text": text}]}
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def good(parent, mutation, role="exploit", memory=None, fenced=False):
    body = {"proposals": [{"parent": parent, "role": role, "mutation": mutation, "reasoning": "because"}]}
    if memory:
        body["memory"] = memory
    text = json.dumps(body)
    return f"Here you go:\n```json\n{text}\n```" if fenced else text


MEMORY = "# Memory\n\n## Established principles\n- smaller nets fit better\n\n## Refuted hypotheses\n- none\n\n" \
         "## Open questions\n- lr?"


def test_openai_retries_rejects_and_runs_the_good_ones(tmp_path, monkeypatch):
    replies = [
        "I would lower the learning rate.",                                          # malformed: no JSON
        good(0, {"training.grad_clip": 2.0}),                                        # outside the whitelist
        good(0, {"training.lr": 0.004}, memory=MEMORY),                              # good
        json.dumps({"proposals": [{"parent": 99, "mutation": {"model.hidden": 6}},   # bad parent
                                  {"parent": 1, "role": "explore", "mutation": {"model.hidden": 6},
                                   "reasoning": "smaller"}]}),                       # good
    ]
    with Scripted(replies, "openai") as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url + "/v1")
        monkeypatch.setenv("OPENAI_MODEL", "test-model")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-test")
        settings = ExploreSettings.for_regime("oscillatory", overrides=TINY, seed=3, space=SPACE, budget=3, slots=2,
                                              proposer="openai", executor="serial", llm_retries=2)
        lines: list[str] = []
        result = Explorer(tmp_path, settings, report=lines.append).run()

    assert len(srv.requests) == 4 and all(r["path"] == "/v1/chat/completions" for r in srv.requests)
    first = srv.requests[0]
    assert first["headers"]["authorization"] == "Bearer sk-secret-test" and first["body"]["model"] == "test-model"
    prompt = first["body"]["messages"][1]["content"]
    assert "training.lr: float [0.001, 0.01] log-scale" in prompt and "## Memory" in prompt
    assert "Valid parent ids: [0]" in prompt
    retry = srv.requests[1]["body"]["messages"]
    assert retry[-2]["role"] == "assistant" and "invalid" in retry[-1]["content"]
    assert "not in the whitelist" in srv.requests[2]["body"]["messages"][-1]["content"]
    assert MEMORY.splitlines()[0] in srv.requests[3]["body"]["messages"][1]["content"]   # memory fed back

    records = read_log(tmp_path / "log.jsonl")
    text = (tmp_path / "log.jsonl").read_text()
    assert "sk-secret-test" not in text
    assert [r["attempt"] for r in records if r["event"] == "llm_invalid"] == [0]
    rejected = [r for r in records if r["event"] == "rejected"]
    assert len(rejected) == 2 and "not in the whitelist" in rejected[0]["reason"] and "parent 99" in rejected[1]["reason"]
    finished = {r["iteration"]: r for r in records if r["event"] == "finished"}
    assert sorted(finished) == [0, 1, 2] and all(r["status"] == "ok" for r in finished.values())
    assert finished[1]["mutation"] == {"training.lr": 0.004} and finished[1]["proposer"] == "openai:test-model"
    assert finished[2]["parent"] == 1 and finished[2]["params"] == {"training.lr": 0.004, "model.hidden": 6}
    assert finished[2]["role"] == "explore" and finished[2]["reasoning"] == "smaller"
    assert (tmp_path / "memory.md").read_text().strip() == MEMORY.strip()
    assert result["counts"]["rejected"] == 2 and len([l for l in lines if l.startswith("it ")]) == 3


def test_anthropic_gives_up_after_bounded_retries_and_logs_the_skip(tmp_path, monkeypatch):
    calls: list[int] = []
    replies = ["not json", good(0, {"training.momentum": 0.9}), good(0, {"model.hidden": 400})]
    with Scripted(replies, "anthropic") as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_MODEL", "claude-test")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "ak-test")
        settings = ExploreSettings.for_regime("oscillatory", overrides=TINY, seed=3, space=SPACE, budget=3, slots=2,
                                              proposer="anthropic", executor="serial", llm_retries=2,
                                              max_empty_rounds=1)
        Explorer(tmp_path, settings, executor=SerialExecutor(fake_job(calls)), report=None).run()
    assert len(srv.requests) == 3 + 3      # round 0: 3 attempts; round 1 (empty server): 3 attempts, then stop
    req = srv.requests[0]
    assert req["path"] == "/v1/messages" and req["headers"]["x-api-key"] == "ak-test"
    assert req["headers"]["anthropic-version"] and "proposals" in req["body"]["system"]
    assert req["body"]["messages"][0]["role"] == "user"
    records = read_log(tmp_path / "log.jsonl")
    assert calls == [0]                     # only the baseline ran
    assert [r["n"] for r in records if r["event"] == "skipped"] == [1, 2]   # round 1 had two slots left
    reasons = [r["reason"] for r in records if r["event"] == "rejected"]
    assert any("training.momentum" in r for r in reasons) and any("model.hidden=400" in r for r in reasons)
    assert len([r for r in records if r["event"] == "llm_invalid"]) == 1 + 3


def test_reply_parsing():
    assert parse_reply('[{"parent": 0, "mutation": {"training.lr": 0.003}}]')[0][0]["parent"] == 0
    props, mem = parse_reply('Sure! {"proposals": [], "memory": "m"} hope this helps')
    assert props == [] and mem == "m"
    for bad in ["{}", '{"proposals": 3}', "nothing", '{"proposals": [], "memory": 5}']:
        with pytest.raises(MalformedReply):
            parse_reply(bad)
