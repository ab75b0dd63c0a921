"""Language-model proposers over plain HTTP (urllib): OpenAI-compatible chat completions or Anthropic Messages.

Configuration comes from the environment:

* openai:    OPENAI_BASE_URL (default https://api.openai.com/v1), OPENAI_MODEL (required), OPENAI_API_KEY
* anthropic: ANTHROPIC_BASE_URL (default https://api.anthropic.com), ANTHROPIC_MODEL (required),
             ANTHROPIC_API_KEY

The prompt holds the memory, the whitelist, the best nodes of the tree and the recent iterations; the reply
must be one JSON object {"proposals": [{parent, mutation, role, reasoning}, ...], "memory": "..."}. A reply
that cannot be parsed, or whose proposals are rejected, is answered with the reasons and retried at most
`max_retries` times; slots still empty after that are skipped and logged. Keys are never logged.
"""
from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from typing import Any

from .proposers import Candidate, KNOWN_ROLES, Proposal, RoundContext


class LLMError(RuntimeError):
    """A request that failed (network, HTTP status, unexpected response shape)."""


class MalformedReply(ValueError):
    """A reply that is not the JSON object the prompt asked for."""


def _post(url: str, body: dict, headers: dict, timeout: float, retries: int, backoff: float) -> dict:
    data = json.dumps(body).encode()
    last: Exception | None = None
    for attempt in range(retries + 1):
        req = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")[:500]
            last = LLMError(f"HTTP {err.code} from {url}: {detail}")
            if err.code not in (408, 409, 429) and err.code < 500:
                raise last from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as err:
            last = LLMError(f"request to {url} failed: {err}")
        if attempt < retries:
            time.sleep(backoff * 2 ** attempt)
    raise last  # type: ignore[misc]


class OpenAIChat:
    """Any OpenAI-compatible /chat/completions endpoint."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 180.0,
                 http_retries: int = 2, backoff: float = 2.0, temperature: float = 0.7):
        self.base_url, self.model, self.api_key = base_url.rstrip("/"), model, api_key
        self.timeout, self.http_retries, self.backoff, self.temperature = timeout, http_retries, backoff, temperature

    @classmethod
    def from_env(cls, **kw: Any) -> "OpenAIChat":
        model = os.environ.get("OPENAI_MODEL")
        if not model:
            raise LLMError("set OPENAI_MODEL (and OPENAI_API_KEY, optionally OPENAI_BASE_URL)")
        return cls(os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"), model,
                   os.environ.get("OPENAI_API_KEY"), **kw)

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    def chat(self, messages: list[dict]) -> str:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        out = _post(f"{self.base_url}/chat/completions",
                    {"model": self.model, "messages": messages, "temperature": self.temperature},
                    headers, self.timeout, self.http_retries, self.backoff)
        try:
            return out["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise LLMError(f"unexpected chat-completions response: {str(out)[:300]}") from None


class AnthropicChat:
    """The Anthropic Messages API (/v1/messages)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 180.0,
                 http_retries: int = 2, backoff: float = 2.0, max_tokens: int = 4096, temperature: float = 0.7):
        self.base_url, self.model, self.api_key = base_url.rstrip("/"), model, api_key
        self.timeout, self.http_retries, self.backoff = timeout, http_retries, backoff
        self.max_tokens, self.temperature = max_tokens, temperature

    @classmethod
    def from_env(cls, **kw: Any) -> "AnthropicChat":
        model = os.environ.get("ANTHROPIC_MODEL")
        if not model:
            raise LLMError("set ANTHROPIC_MODEL (and ANTHROPIC_API_KEY, optionally ANTHROPIC_BASE_URL)")
        return cls(os.environ.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com"), model,
                   os.environ.get("ANTHROPIC_API_KEY"), **kw)

    @property
    def name(self) -> str:
        return f"anthropic:{self.model}"

    def chat(self, messages: list[dict]) -> str:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        rest = [m for m in messages if m["role"] != "system"]
        headers = {"anthropic-version": "2023-06-01"}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        out = _post(f"{self.base_url}/v1/messages",
                    {"model": self.model, "max_tokens": self.max_tokens, "temperature": self.temperature,
                     "system": system, "messages": rest},
                    headers, self.timeout, self.http_retries, self.backoff)
        try:
            return "".join(b.get("text", "") for b in out["content"] if b.get("type") == "text")
        except (KeyError, TypeError, AttributeError):
            raise LLMError(f"unexpected messages response: {str(out)[:300]}") from None


SYSTEM_PROMPT = """\
You steer a closed-loop hyperparameter exploration. A graph neural network is trained to recover the rate \
constants of a metabolic network from concentration time series; each configuration is trained and scored.

Each proposal is a parent (the iteration id of an evaluated configuration) plus a mutation: a JSON object \
mapping whitelisted config keys to new values. Only whitelisted keys, with values inside their ranges (or \
among their choices), are accepted; anything else is rejected and not run. Do not repeat a configuration \
that was already evaluated.

Roles: "exploit" refines a strong node with a small change; "explore" tries an under-visited node or a bold \
change; "test-a-principle" applies one principle from the memory to the best node to confirm or refute it.

Reply with ONE JSON object and nothing else:
{"proposals": [{"parent": <int>, "role": "<role>", "mutation": {"<key>": <value>}, "reasoning": "<1-2 \
sentences>"}], "memory": "<optional updated memory in markdown with the sections '## Established principles', \
'## Refuted hypotheses', '## Open questions'; at most 30 lines>"}"""


def build_prompt(ctx: RoundContext) -> str:
    """The user message of a round: task, whitelist, memory, tree and recent iterations."""
    lines = [f"# Round {ctx.round}",
             f"Propose exactly {len(ctx.roles)} configurations with roles {json.dumps(ctx.roles)}.",
             f"Score: `{ctx.score_key}`, {'higher' if ctx.maximize else 'lower'} is better.",
             f"Valid parent ids: {ctx.parents()}", "", "## Whitelist (key, type, range or choices, default value)"]
    for key, p in ctx.space.params.items():
        rng = f"choices {list(p.choices)}" if p.kind == "choice" else \
            f"[{p.low}, {p.high}]{' log-scale' if p.log else ''}"
        lines.append(f"- {key}: {p.kind} {rng}; default {ctx.base_values.get(key)!r}")
    lines += ["", "## Memory", ctx.memory.strip() or "(empty)", "", "## Tree: nodes with the highest UCB"]
    scored = [(ctx.tree.ucb(n.id), n) for n in ctx.tree.ok()]
    scored = sorted([s for s in scored if s[0] is not None], key=lambda s: -s[0])[:8]
    for ucb, n in scored:
        stats = ctx.tree.stats(n.id)
        lines.append(f"- it {n.id} (parent {n.parent}): score {n.score:.4g}, UCB {ucb:.4g}, subtree n={stats[0]}; "
                     f"params {json.dumps(n.params)}")
    lines += ["", f"## Recent iterations (last {ctx.recent})", "id | round | role | parent | mutation | status | score"]
    done = [it for it in ctx.iterations if it.get("finished")][-ctx.recent:]
    for it in done:
        score = it.get("score")
        lines.append(f"{it['iteration']} | {it.get('round')} | {it.get('role')} | {it.get('parent')} | "
                     f"{json.dumps(it.get('mutation', {}))} | {it.get('status')} | "
                     f"{'n/a' if score is None else f'{score:.4g}'}")
    return "\n".join(lines)


def extract_json(text: str) -> Any:
    """The JSON value in a reply: the whole text, a ```json fence, or the outermost {...} / [...] span."""
    text = text.strip()
    candidates = [text]
    candidates += re.findall(r"```(?:json)?\s*(.*?)```", text, flags=re.S)
    for open_, close in (("{", "}"), ("[", "]")):
        i, j = text.find(open_), text.rfind(close)
        if 0 <= i < j:
            candidates.append(text[i:j + 1])
    for cand in candidates:
        try:
            return json.loads(cand)
        except json.JSONDecodeError:
            continue
    raise MalformedReply("no JSON object found in the reply")


def parse_reply(text: str) -> tuple[list[Any], str | None]:
    """(raw proposals, memory text or None); raises MalformedReply if the shape is wrong."""
    value = extract_json(text)
    if isinstance(value, list):
        value = {"proposals": value}
    if not isinstance(value, dict) or not isinstance(value.get("proposals"), list):
        raise MalformedReply('expected an object with a "proposals" list')
    memory = value.get("memory")
    if memory is not None and not isinstance(memory, str):
        raise MalformedReply('"memory" must be a string')
    return value["proposals"], (memory.strip() or None) if memory else None


def to_proposal(raw: Any, default_role: str) -> Proposal:
    """A Proposal from one raw reply entry (types are checked later by the vetting)."""
    if not isinstance(raw, dict):
        return Proposal(parent=-1, mutation={}, role=default_role, reasoning=f"not an object: {raw!r}")
    parent = raw.get("parent")
    if isinstance(parent, float) and parent.is_integer():
        parent = int(parent)
    role = raw.get("role") if raw.get("role") in KNOWN_ROLES else default_role
    return Proposal(parent=parent, mutation=raw.get("mutation"), role=role,
                    reasoning=str(raw.get("reasoning", ""))[:2000])


class LLMProposer:
    """Asks a chat model for the round's proposals; retries malformed or rejected replies a bounded number of times."""

    def __init__(self, client: Any, max_retries: int = 2):
        self.client, self.max_retries = client, max_retries
        self.name = client.name

    def propose(self, ctx: RoundContext) -> tuple[list[Candidate], str | None]:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": build_prompt(ctx)}]
        out: list[Candidate] = []
        memory: str | None = None
        roles = list(ctx.roles)
        for attempt in range(self.max_retries + 1):
            try:
                reply = self.client.chat(messages)
            except LLMError as err:
                ctx.log({"event": "llm_error", "round": ctx.round, "proposer": self.name, "attempt": attempt,
                         "error": str(err)[:1000]})
                continue
            try:
                raws, mem = parse_reply(reply)
            except MalformedReply as err:
                ctx.log({"event": "llm_invalid", "round": ctx.round, "proposer": self.name, "attempt": attempt,
                         "error": str(err), "reply": reply[:2000]})
                feedback = f"Your reply was invalid: {err}. Reply with the JSON object only."
            else:
                memory = mem or memory
                reasons = []
                for raw in raws:
                    if not roles:
                        ctx.log({"event": "rejected", "round": ctx.round, "proposer": self.name, "proposal": raw,
                                 "reason": "more proposals than slots"})
                        continue
                    cand = ctx.vet(to_proposal(raw, roles[0]), raw=raw)
                    if cand is None:
                        reasons.append(f"{json.dumps(raw, default=str)[:300]} -> {ctx.rejections[-1]}")
                        continue
                    out.append(cand)
                    if cand.proposal.role in roles:
                        roles.remove(cand.proposal.role)
                    else:
                        roles.pop(0)
                if not roles:
                    break
                feedback = (f"{len(raws)} proposals received, {len(reasons)} rejected:\n" + "\n".join(reasons) +
                            f"\nPropose {len(roles)} more with roles {json.dumps(roles)}, as the same JSON object.")
            messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": feedback}]
        if roles:
            ctx.log({"event": "skipped", "round": ctx.round, "proposer": self.name, "n": len(roles),
                     "reason": f"no valid proposal for roles {roles} after {self.max_retries + 1} attempts"})
        return out, memory


def make_llm_proposer(kind: str, max_retries: int = 2, **client_kw: Any) -> LLMProposer:
    """An LLMProposer for "openai" or "anthropic", configured from the environment."""
    if kind == "openai":
        client: Any = OpenAIChat.from_env(**client_kw)
    elif kind == "anthropic":
        client = AnthropicChat.from_env(**client_kw)
    else:
        raise ValueError(f"unknown LLM proposer {kind!r}")
    return LLMProposer(client, max_retries=max_retries)


__all__ = ["AnthropicChat", "LLMError", "LLMProposer", "MalformedReply", "OpenAIChat", "build_prompt",
           "extract_json", "make_llm_proposer", "parse_reply"]
