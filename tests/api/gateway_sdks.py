"""The breaker-gateway as real users see it: the official OpenAI and Anthropic Python SDKs with
their base_url pointed at the gateway, in front of the scripted fake provider (tests/fake_provider.rs).

Each check is one fact a user relies on: the echo text and the token usage arrive in the SDK's
typed objects, streaming included; a fallback chain that crosses protocols (an Anthropic client
served by an OpenAI deployment and back) gives well-formed objects; tool calls survive the
translation both ways; the gateway's and the upstream's errors surface as the SDK's own exception
types; the x-helix-* headers say who answered. The fake answers deterministically ("echo: " + the
last user text, tokens = whitespace-separated words), so every expected value is computed here,
from the prompt and the configured prices.

The configuration this expects is written by gateway_sdks.sh (deployment ids, model names,
prices and keys below must match it). Every scenario resets the fake and scripts it for the
upstream models it uses, so leftover script entries never leak into the next one; the SDK clients
never retry (max_retries=0), so what the gateway answered is what the test sees.

usage: gateway_sdks.py GATEWAY_URL FAKE_URL
env:   HELIX_SDK_GATEWAY_KEY, HELIX_SDK_BUDGET_KEY (gateway keys), HELIX_SDK_UPSTREAM_KEY (the key
       the deployments send upstream, only to check that the fake received it)
"""
import json
import math
import os
import sys
import traceback
import urllib.request
import warnings

import anthropic
import openai

gateway = sys.argv[1].rstrip("/")
fake = sys.argv[2].rstrip("/")
KEY = os.environ["HELIX_SDK_GATEWAY_KEY"]
BUDGET_KEY = os.environ["HELIX_SDK_BUDGET_KEY"]
UPSTREAM_KEY = os.environ["HELIX_SDK_UPSTREAM_KEY"]

# USD per million tokens (input, output) of the upstream models, as in gateway_sdks.sh
PRICES = {
    "gpt-main": (2.0, 8.0),
    "claude-main": (3.0, 15.0),
    "gpt-backup": (1.0, 4.0),
    "claude-backup": (0.8, 4.0),
}
SYSTEM = "answer briefly"
PROMPT = "the quick brown fox jumps"
TOOL_PROMPT = "what is the weather in Paris"
TIMEOUT = 20.0

passed = 0
failures = []


def check(name, ok, detail=""):
    global passed
    if ok:
        passed += 1
    else:
        failures.append(f"{name}: {detail}")
        print(f"FAIL {name}: {detail}", flush=True)


def words(text):
    return len(text.split())


def echo(text):
    return f"echo: {text}"


def cost(model, input_tokens, output_tokens):
    price_in, price_out = PRICES[model]
    return input_tokens / 1e6 * price_in + output_tokens / 1e6 * price_out


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)


# -- the fake provider's control API ---------------------------------------------------------------


def fake_call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{fake}{path}", data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=TIMEOUT) as res:
        raw = res.read()
    return json.loads(raw) if raw else None


secret_leaks = []


def upstream_requests():
    """The provider requests the fake received since the last reset."""
    requests = fake_call("GET", "/_fake/requests")
    for r in requests:
        # the gateway's own keys authenticate the client to the gateway, never to an upstream
        seen = json.dumps(r)
        if KEY in seen or BUDGET_KEY in seen:
            secret_leaks.append(f"{r['method']} {r['path']} (seq {r['seq']})")
    return requests


def script(*entries):
    """Resets the fake (queue, default, recorded requests) and queues `entries`."""
    upstream_requests()  # scans what the previous scenario sent before it is forgotten
    fake_call("POST", "/_fake/reset")
    if entries:
        fake_call("POST", "/_fake/script", list(entries))


def status(code, model, times=1, **extra):
    return [{"mode": "status", "code": code, "model": model, **extra}] * times


def mode_header(code):
    """A per-request fake mode, for same-protocol deployments (the gateway passes it on)."""
    return {"x-fake-mode": json.dumps({"mode": "status", "code": code, "retry_after_ms": 10})}


def gateway_json(method, path):
    req = urllib.request.Request(f"{gateway}{path}", method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=TIMEOUT) as res:
        return json.loads(res.read())


# -- clients ---------------------------------------------------------------------------------------


def oai(key=KEY):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=TIMEOUT)


def ant(key=KEY):
    return anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0, timeout=TIMEOUT)


OPENAI_MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
ANTHROPIC_MESSAGES = [{"role": "user", "content": PROMPT}]
INPUT_TOKENS = words(SYSTEM) + words(PROMPT)
OUTPUT_TOKENS = words(echo(PROMPT))

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"echo": {"type": "string", "description": "what to look up"}},
    "required": ["echo"],
}
OPENAI_TOOLS = [{
    "type": "function",
    "function": {"name": "get_weather", "description": "the weather somewhere", "parameters": WEATHER_SCHEMA},
}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "the weather somewhere", "input_schema": WEATHER_SCHEMA}]


def helix_headers(name, headers, deployment, fallback_from=None):
    check(f"{name}: x-helix-deployment", headers.get("x-helix-deployment") == deployment,
          f"expected {deployment!r}, got {headers.get('x-helix-deployment')!r}")
    check(f"{name}: x-helix-fallback-from", headers.get("x-helix-fallback-from") == fallback_from,
          f"expected {fallback_from!r}, got {headers.get('x-helix-fallback-from')!r}")


def cost_header(name, headers, model, input_tokens, output_tokens):
    want = cost(model, input_tokens, output_tokens)
    got = headers.get("x-helix-cost-usd")
    try:
        ok = got is not None and close(float(got), want)
    except ValueError:
        ok = False
    check(f"{name}: x-helix-cost-usd", ok, f"expected {want!r}, got {got!r}")


def openai_stream_result(stream):
    """(text, finish_reason, usage) of a Chat Completions stream, as a user assembles them."""
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                text += choice.delta.content
            if choice.finish_reason:
                finish = choice.finish_reason
    return text, finish, usage


def openai_answer(name, r, text, input_tokens, output_tokens):
    choice = r.choices[0]
    check(f"{name}: choices[0].message.content", choice.message.content == text,
          f"expected {text!r}, got {choice.message.content!r}")
    check(f"{name}: role and finish_reason", (choice.message.role, choice.finish_reason) == ("assistant", "stop"),
          f"got {choice.message.role!r}, {choice.finish_reason!r}")
    u = r.usage
    got = None if u is None else (u.prompt_tokens, u.completion_tokens, u.total_tokens)
    want = (input_tokens, output_tokens, input_tokens + output_tokens)
    check(f"{name}: usage", got == want, f"expected {want}, got {got}")
    check(f"{name}: object", r.object == "chat.completion" and bool(r.id), f"got {r.object!r}, id {r.id!r}")


def anthropic_answer(name, m, text, input_tokens, output_tokens):
    first = m.content[0] if m.content else None
    check(f"{name}: content[0].text", first is not None and first.type == "text" and first.text == text,
          f"expected text {text!r}, got {m.content!r}")
    check(f"{name}: stop_reason", m.stop_reason == "end_turn", f"got {m.stop_reason!r}")
    got = (m.usage.input_tokens, m.usage.output_tokens)
    check(f"{name}: usage", got == (input_tokens, output_tokens),
          f"expected {(input_tokens, output_tokens)}, got {got}")
    check(f"{name}: message shape", (m.type, m.role) == ("message", "assistant") and bool(m.id),
          f"got type {m.type!r}, role {m.role!r}, id {m.id!r}")


# -- scenarios -------------------------------------------------------------------------------------


def models_are_listed():
    want = {"gpt", "claude", "gpt-fallback", "claude-fallback"}
    ids = {m.id for m in oai().models.list()}
    check("openai models.list", want <= ids, f"expected {sorted(want)} among {sorted(ids)}")
    ids = {m.id for m in ant().models.list()}
    check("anthropic models.list", want <= ids, f"expected {sorted(want)} among {sorted(ids)}")


def openai_same_protocol():
    name = "openai → openai"
    script()
    raw = oai().chat.completions.with_raw_response.create(model="gpt", messages=OPENAI_MESSAGES)
    openai_answer(name, raw.parse(), echo(PROMPT), INPUT_TOKENS, OUTPUT_TOKENS)
    helix_headers(name, raw.headers, "oa-main")
    cost_header(name, raw.headers, "gpt-main", INPUT_TOKENS, OUTPUT_TOKENS)
    sent = upstream_requests()
    check(f"{name}: upstream request", [(r["path"], r["body"].get("model")) for r in sent]
          == [("/v1/chat/completions", "gpt-main")], f"got {[(r['path'], r['body'].get('model')) for r in sent]}")
    check(f"{name}: the upstream got the deployment's key, not the gateway's",
          all(r["headers"].get("authorization") == f"Bearer {UPSTREAM_KEY}" for r in sent), "wrong authorization")

    name = "openai → openai, streaming"
    script()
    stream = oai().chat.completions.create(model="gpt", messages=OPENAI_MESSAGES, stream=True,
                                           stream_options={"include_usage": True})
    helix_headers(name, stream.response.headers, "oa-main")
    text, finish, usage = openai_stream_result(stream)
    check(f"{name}: text", text == echo(PROMPT), f"got {text!r}")
    check(f"{name}: finish_reason", finish == "stop", f"got {finish!r}")
    got = None if usage is None else (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
    check(f"{name}: usage (include_usage)", got == (INPUT_TOKENS, OUTPUT_TOKENS, INPUT_TOKENS + OUTPUT_TOKENS),
          f"got {got}")


def anthropic_same_protocol():
    name = "anthropic → anthropic"
    script()
    raw = ant().messages.with_raw_response.create(model="claude", max_tokens=64, system=SYSTEM,
                                                  messages=ANTHROPIC_MESSAGES)
    anthropic_answer(name, raw.parse(), echo(PROMPT), INPUT_TOKENS, OUTPUT_TOKENS)
    helix_headers(name, raw.headers, "an-main")
    cost_header(name, raw.headers, "claude-main", INPUT_TOKENS, OUTPUT_TOKENS)
    sent = upstream_requests()
    check(f"{name}: upstream request", [(r["path"], r["body"].get("model")) for r in sent]
          == [("/v1/messages", "claude-main")], f"got {[(r['path'], r['body'].get('model')) for r in sent]}")
    check(f"{name}: the upstream got the deployment's key, not the gateway's",
          all(r["headers"].get("x-api-key") == UPSTREAM_KEY for r in sent), "wrong x-api-key")

    name = "anthropic → anthropic, messages.stream"
    script()
    with ant().messages.stream(model="claude", max_tokens=64, system=SYSTEM, messages=ANTHROPIC_MESSAGES) as s:
        helix_headers(name, s.response.headers, "an-main")
        text = "".join(s.text_stream)
        final = s.get_final_message()
    check(f"{name}: text_stream", text == echo(PROMPT), f"got {text!r}")
    anthropic_answer(name, final, echo(PROMPT), INPUT_TOKENS, OUTPUT_TOKENS)


def anthropic_falls_back_to_openai():
    """An Anthropic client, its first deployment overloaded (529): an OpenAI deployment answers."""
    name = "anthropic → 529 → openai"
    script(*status(529, "claude-flaky", 2))
    raw = ant().messages.with_raw_response.create(model="claude-fallback", max_tokens=64, system=SYSTEM,
                                                  messages=ANTHROPIC_MESSAGES)
    anthropic_answer(name, raw.parse(), echo(PROMPT), INPUT_TOKENS, OUTPUT_TOKENS)
    helix_headers(name, raw.headers, "oa-backup", "an-flaky")
    cost_header(name, raw.headers, "gpt-backup", INPUT_TOKENS, OUTPUT_TOKENS)
    sent = upstream_requests()
    tried = [(r["path"], r["body"].get("model"), (r["mode"] or {}).get("mode")) for r in sent]
    first, last = tried[:-1], tried[-1:]
    check(f"{name}: upstream calls", bool(first) and all(t == ("/v1/messages", "claude-flaky", "status") for t in first)
          and last == [("/v1/chat/completions", "gpt-backup", "ok")], f"got {tried}")
    body = sent[-1]["body"] if sent else {}
    msgs = body.get("messages") or []
    check(f"{name}: translated request", bool(msgs) and msgs[0].get("role") == "system"
          and SYSTEM in json.dumps(msgs[0]) and msgs[-1].get("role") == "user" and PROMPT in json.dumps(msgs[-1]),
          f"got messages {msgs}")
    check(f"{name}: the OpenAI deployment got its key",
          bool(sent) and sent[-1]["headers"].get("authorization") == f"Bearer {UPSTREAM_KEY}", "wrong authorization")

    name = "anthropic → 529 → openai, messages.stream"
    script(*status(529, "claude-flaky", 2))
    with ant().messages.stream(model="claude-fallback", max_tokens=64, system=SYSTEM,
                               messages=ANTHROPIC_MESSAGES) as s:
        helix_headers(name, s.response.headers, "oa-backup", "an-flaky")
        events = [e.type for e in s]
        final = s.get_final_message()
    text = "".join(b.text for b in final.content if b.type == "text")
    check(f"{name}: text", text == echo(PROMPT), f"got {text!r}")
    check(f"{name}: event order", events[:1] == ["message_start"] and events[-1:] == ["message_stop"]
          and "content_block_delta" in events, f"got {events}")
    anthropic_answer(name, final, echo(PROMPT), INPUT_TOKENS, OUTPUT_TOKENS)
    sent = upstream_requests()
    check(f"{name}: the OpenAI stream was asked for usage",
          bool(sent) and sent[-1]["body"].get("stream") is True
          and (sent[-1]["body"].get("stream_options") or {}).get("include_usage") is True,
          f"got {sent[-1]['body'] if sent else None}")


def openai_falls_back_to_anthropic():
    """An OpenAI client, its first deployment failing (500): an Anthropic deployment answers."""
    name = "openai → 500 → anthropic"
    script(*status(500, "gpt-flaky", 2))
    raw = oai().chat.completions.with_raw_response.create(model="gpt-fallback", messages=OPENAI_MESSAGES)
    openai_answer(name, raw.parse(), echo(PROMPT), INPUT_TOKENS, OUTPUT_TOKENS)
    helix_headers(name, raw.headers, "an-backup", "oa-flaky")
    cost_header(name, raw.headers, "claude-backup", INPUT_TOKENS, OUTPUT_TOKENS)
    sent = upstream_requests()
    tried = [(r["path"], r["body"].get("model"), (r["mode"] or {}).get("mode")) for r in sent]
    first, last = tried[:-1], tried[-1:]
    check(f"{name}: upstream calls", bool(first)
          and all(t == ("/v1/chat/completions", "gpt-flaky", "status") for t in first)
          and last == [("/v1/messages", "claude-backup", "ok")], f"got {tried}")
    up = sent[-1] if sent else {"headers": {}, "body": {}}
    check(f"{name}: translated request", SYSTEM in json.dumps(up["body"].get("system"))
          and isinstance(up["body"].get("max_tokens"), int) and "anthropic-version" in up["headers"],
          f"got {up['body']}")
    check(f"{name}: the Anthropic deployment got its key", up["headers"].get("x-api-key") == UPSTREAM_KEY,
          "wrong x-api-key")

    name = "openai → 500 → anthropic, streaming"
    script(*status(500, "gpt-flaky", 2))
    stream = oai().chat.completions.create(model="gpt-fallback", messages=OPENAI_MESSAGES, stream=True,
                                           stream_options={"include_usage": True})
    helix_headers(name, stream.response.headers, "an-backup", "oa-flaky")
    text, finish, usage = openai_stream_result(stream)
    check(f"{name}: text", text == echo(PROMPT), f"got {text!r}")
    check(f"{name}: finish_reason", finish == "stop", f"got {finish!r}")
    got = None if usage is None else (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
    check(f"{name}: usage (include_usage)", got == (INPUT_TOKENS, OUTPUT_TOKENS, INPUT_TOKENS + OUTPUT_TOKENS),
          f"got {got}")


def anthropic_tool_call_through_openai():
    name = "anthropic tools → openai"
    script(*status(529, "claude-flaky", 2), {"mode": "tool_call", "model": "gpt-backup"})
    m = ant().messages.create(model="claude-fallback", max_tokens=64, tools=ANTHROPIC_TOOLS,
                              messages=[{"role": "user", "content": TOOL_PROMPT}])
    uses = [b for b in m.content if b.type == "tool_use"]
    check(f"{name}: tool_use block", len(uses) == 1 and uses[0].name == "get_weather"
          and uses[0].input == {"echo": TOOL_PROMPT} and bool(uses[0].id), f"got {m.content!r}")
    check(f"{name}: stop_reason", m.stop_reason == "tool_use", f"got {m.stop_reason!r}")
    check(f"{name}: usage", (m.usage.input_tokens, m.usage.output_tokens) == (words(TOOL_PROMPT), words(TOOL_PROMPT)),
          f"got {m.usage!r}")
    sent = upstream_requests()
    tools = (sent[-1]["body"].get("tools") if sent else None) or [{}]
    check(f"{name}: tools in OpenAI's shape", tools[0].get("type") == "function"
          and (tools[0].get("function") or {}).get("name") == "get_weather"
          and (tools[0].get("function") or {}).get("parameters") == WEATHER_SCHEMA, f"got {tools}")
    if not uses:
        return

    # the second turn: the tool's result goes back, translated to OpenAI's tool message
    name = "anthropic tool_result → openai"
    tool_id = uses[0].id
    script(*status(529, "claude-flaky", 2))
    m2 = ant().messages.create(model="claude-fallback", max_tokens=64, tools=ANTHROPIC_TOOLS, messages=[
        {"role": "user", "content": TOOL_PROMPT},
        {"role": "assistant", "content": [u.model_dump(exclude_none=True) for u in uses]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "sunny"}]},
    ])
    check(f"{name}: answer", m2.stop_reason == "end_turn" and m2.content and m2.content[0].type == "text",
          f"got {m2!r}")
    sent = upstream_requests()
    msgs = (sent[-1]["body"].get("messages") if sent else None) or []
    calls = [c for x in msgs if x.get("role") == "assistant" for c in (x.get("tool_calls") or [])]
    results = [x for x in msgs if x.get("role") == "tool"]
    check(f"{name}: assistant tool_calls upstream", len(calls) == 1 and calls[0].get("id") == tool_id
          and calls[0]["function"]["name"] == "get_weather"
          and json.loads(calls[0]["function"]["arguments"]) == {"echo": TOOL_PROMPT}, f"got {msgs}")
    check(f"{name}: tool message upstream", len(results) == 1 and results[0].get("tool_call_id") == tool_id
          and "sunny" in json.dumps(results[0].get("content")), f"got {msgs}")

    name = "anthropic tools → openai, messages.stream"
    script(*status(529, "claude-flaky", 2), {"mode": "tool_call", "model": "gpt-backup"})
    with ant().messages.stream(model="claude-fallback", max_tokens=64, tools=ANTHROPIC_TOOLS,
                               messages=[{"role": "user", "content": TOOL_PROMPT}]) as s:
        final = s.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    check(f"{name}: tool_use block", len(uses) == 1 and uses[0].name == "get_weather"
          and uses[0].input == {"echo": TOOL_PROMPT} and bool(uses[0].id), f"got {final.content!r}")
    check(f"{name}: stop_reason", final.stop_reason == "tool_use", f"got {final.stop_reason!r}")


def openai_tool_call_through_anthropic():
    name = "openai tools → anthropic"
    script(*status(500, "gpt-flaky", 2), {"mode": "tool_call", "model": "claude-backup"})
    messages = [{"role": "user", "content": TOOL_PROMPT}]
    r = oai().chat.completions.create(model="gpt-fallback", messages=messages, tools=OPENAI_TOOLS)
    choice = r.choices[0]
    calls = choice.message.tool_calls or []
    try:
        args = json.loads(calls[0].function.arguments) if calls else None
    except ValueError:
        args = calls[0].function.arguments
    check(f"{name}: tool_calls", len(calls) == 1 and calls[0].type == "function"
          and calls[0].function.name == "get_weather" and args == {"echo": TOOL_PROMPT} and bool(calls[0].id),
          f"got {choice.message!r}")
    check(f"{name}: finish_reason", choice.finish_reason == "tool_calls", f"got {choice.finish_reason!r}")
    sent = upstream_requests()
    tools = (sent[-1]["body"].get("tools") if sent else None) or [{}]
    check(f"{name}: tools in Anthropic's shape", tools[0].get("name") == "get_weather"
          and tools[0].get("input_schema") == WEATHER_SCHEMA, f"got {tools}")
    if not calls:
        return

    # the second turn: the fake echoes the last user text, which upstream is the tool_result
    name = "openai tool message → anthropic"
    script(*status(500, "gpt-flaky", 2))
    r2 = oai().chat.completions.create(model="gpt-fallback", tools=OPENAI_TOOLS, messages=messages + [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
    ])
    check(f"{name}: answer", r2.choices[0].message.content == echo("sunny"),
          f"expected {echo('sunny')!r}, got {r2.choices[0].message.content!r}")
    sent = upstream_requests()
    msgs = (sent[-1]["body"].get("messages") if sent else None) or []
    blocks = [b for x in msgs if isinstance(x.get("content"), list) for b in x["content"]]
    uses = [b for b in blocks if b.get("type") == "tool_use"]
    results = [b for b in blocks if b.get("type") == "tool_result"]
    check(f"{name}: tool_use upstream", len(uses) == 1 and uses[0].get("id") == calls[0].id
          and uses[0].get("input") == {"echo": TOOL_PROMPT}, f"got {msgs}")
    check(f"{name}: tool_result upstream", len(results) == 1 and results[0].get("tool_use_id") == calls[0].id,
          f"got {msgs}")

    name = "openai tools → anthropic, chat.completions.stream"
    script(*status(500, "gpt-flaky", 2), {"mode": "tool_call", "model": "claude-backup"})
    with oai().chat.completions.stream(model="gpt-fallback", messages=messages, tools=OPENAI_TOOLS,
                                       stream_options={"include_usage": True}) as s:
        final = s.get_final_completion()
    choice = final.choices[0]
    calls = choice.message.tool_calls or []
    try:
        args = json.loads(calls[0].function.arguments) if calls else None
    except ValueError:
        args = calls[0].function.arguments
    check(f"{name}: tool_calls", len(calls) == 1 and calls[0].function.name == "get_weather"
          and args == {"echo": TOOL_PROMPT} and bool(calls[0].id), f"got {choice.message!r}")
    check(f"{name}: finish_reason", choice.finish_reason == "tool_calls", f"got {choice.finish_reason!r}")
    u = final.usage
    check(f"{name}: usage", u is not None and (u.prompt_tokens, u.completion_tokens)
          == (words(TOOL_PROMPT), words(TOOL_PROMPT)), f"got {u!r}")


def error_type(e):
    """`error.type` of an Anthropic SDK exception (its `body` is the whole error body)."""
    body = getattr(e, "body", None)
    inner = body.get("error", body) if isinstance(body, dict) else None
    return inner.get("type") if isinstance(inner, dict) else None


def expect_error(name, exc_type, code, call):
    """Runs `call`, which must raise `exc_type` with status `code`; returns the exception."""
    try:
        call()
    except exc_type as e:
        check(f"{name}: {exc_type.__module__.split('.')[0]}.{exc_type.__name__} {code}", e.status_code == code,
              f"status {e.status_code}: {e}")
        return e
    except Exception as e:  # noqa: BLE001 - the wrong exception is the finding
        check(f"{name}: {exc_type.__name__}", False, f"got {type(e).__module__}.{type(e).__name__}: {e}")
        return None
    check(f"{name}: {exc_type.__name__}", False, "no exception")
    return None


def wrong_key_is_refused():
    script()
    expect_error("wrong gateway key (openai)", openai.AuthenticationError, 401,
                 lambda: oai("sk-not-a-gateway-key").chat.completions.create(model="gpt", messages=OPENAI_MESSAGES))
    expect_error("wrong gateway key (anthropic)", anthropic.AuthenticationError, 401,
                 lambda: ant("sk-not-a-gateway-key").messages.create(model="claude", max_tokens=64,
                                                                      messages=ANTHROPIC_MESSAGES))
    check("wrong gateway key: nothing went upstream", upstream_requests() == [], "the fake got requests")


def unknown_model_is_not_found():
    script()
    e = expect_error("unknown model (openai)", openai.NotFoundError, 404,
                     lambda: oai().chat.completions.create(model="no-such-model", messages=OPENAI_MESSAGES))
    check("unknown model (openai): message names it", e is not None and "no-such-model" in e.message,
          f"got {getattr(e, 'message', None)!r}")
    e = expect_error("unknown model (anthropic)", anthropic.NotFoundError, 404,
                     lambda: ant().messages.create(model="no-such-model", max_tokens=64, messages=ANTHROPIC_MESSAGES))
    check("unknown model (anthropic): message names it", e is not None and "no-such-model" in e.message,
          f"got {getattr(e, 'message', None)!r}")


def upstream_bad_request():
    scripted = "scripted invalid request"
    script()
    e = expect_error("upstream 400 (openai)", openai.BadRequestError, 400,
                     lambda: oai().chat.completions.create(model="gpt", messages=OPENAI_MESSAGES,
                                                           extra_headers=mode_header(400)))
    check("upstream 400 (openai): the upstream's message", e is not None and scripted in e.message,
          f"got {getattr(e, 'message', None)!r}")
    e = expect_error("upstream 400 (anthropic)", anthropic.BadRequestError, 400,
                     lambda: ant().messages.create(model="claude", max_tokens=64, messages=ANTHROPIC_MESSAGES,
                                                   extra_headers=mode_header(400)))
    check("upstream 400 (anthropic): the upstream's message", e is not None and scripted in e.message,
          f"got {getattr(e, 'message', None)!r}")

    # a client error is the client's answer: no fallback
    script(*status(400, "claude-flaky"))
    expect_error("upstream 400, first of a chain (anthropic)", anthropic.BadRequestError, 400,
                 lambda: ant().messages.create(model="claude-fallback", max_tokens=64, messages=ANTHROPIC_MESSAGES))
    tried = [r["body"].get("model") for r in upstream_requests()]
    check("upstream 400: no fallback", tried == ["claude-flaky"], f"upstream calls {tried}")

    # an OpenAI deployment's 400, translated into Anthropic's error shape
    script(*status(529, "claude-flaky", 2), *status(400, "gpt-backup"))
    e = expect_error("upstream 400 across protocols (anthropic ← openai)", anthropic.BadRequestError, 400,
                     lambda: ant().messages.create(model="claude-fallback", max_tokens=64, messages=ANTHROPIC_MESSAGES))
    check("upstream 400 across protocols (anthropic ← openai): message and type", e is not None
          and scripted in e.message and error_type(e) == "invalid_request_error",
          f"got {getattr(e, 'body', None)!r}")
    script(*status(500, "gpt-flaky", 2), *status(400, "claude-backup"))
    e = expect_error("upstream 400 across protocols (openai ← anthropic)", openai.BadRequestError, 400,
                     lambda: oai().chat.completions.create(model="gpt-fallback", messages=OPENAI_MESSAGES))
    check("upstream 400 across protocols (openai ← anthropic): message", e is not None and scripted in e.message,
          f"got {getattr(e, 'message', None)!r}")


def rate_limited_everywhere():
    limited = "Rate limit reached"
    script(*status(429, "claude-flaky", 3, retry_after_ms=10), *status(429, "gpt-backup", 3, retry_after_ms=10))
    e = expect_error("rate limited everywhere (anthropic)", anthropic.RateLimitError, 429,
                     lambda: ant().messages.create(model="claude-fallback", max_tokens=64, messages=ANTHROPIC_MESSAGES))
    check("rate limited everywhere (anthropic): message", e is not None and limited in e.message,
          f"got {getattr(e, 'message', None)!r}")
    sent = upstream_requests()
    tried = {(r["body"].get("model"), (r["mode"] or {}).get("code")) for r in sent}
    check("rate limited everywhere (anthropic): both deployments tried, all 429",
          tried == {("claude-flaky", 429), ("gpt-backup", 429)}, f"got {tried}")

    script(*status(429, "gpt-flaky", 3, retry_after_ms=10), *status(429, "claude-backup", 3, retry_after_ms=10))
    e = expect_error("rate limited everywhere (openai, streaming)", openai.RateLimitError, 429,
                     lambda: list(oai().chat.completions.create(model="gpt-fallback", messages=OPENAI_MESSAGES,
                                                                stream=True)))
    check("rate limited everywhere (openai): message", e is not None and limited in e.message,
          f"got {getattr(e, 'message', None)!r}")
    sent = upstream_requests()
    tried = {(r["body"].get("model"), (r["mode"] or {}).get("code")) for r in sent}
    check("rate limited everywhere (openai): both deployments tried, all 429",
          tried == {("gpt-flaky", 429), ("claude-backup", 429)}, f"got {tried}")


def budget_is_enforced():
    """The budget key's project may spend 1 µUSD a day: one call spends more, the next is refused."""
    script()
    oai(BUDGET_KEY).chat.completions.create(model="gpt", messages=OPENAI_MESSAGES)
    e = expect_error("budget spent (openai)", openai.RateLimitError, 429,
                     lambda: oai(BUDGET_KEY).chat.completions.create(model="gpt", messages=OPENAI_MESSAGES))
    check("budget spent (openai): code and Retry-After", e is not None and e.code == "budget_exceeded"
          and e.response.headers.get("retry-after", "").isdigit(), f"got code {getattr(e, 'code', None)!r}")
    expect_error("budget spent (anthropic)", anthropic.RateLimitError, 429,
                 lambda: ant(BUDGET_KEY).messages.create(model="claude", max_tokens=64, messages=ANTHROPIC_MESSAGES))
    check("budget spent: only the first call went upstream", len(upstream_requests()) == 1, "more upstream calls")


def stream_cut_midway():
    """An upstream stream that breaks after it started cannot fall back any more: the client must
    get the SDK's error, not an answer that silently ends early."""
    cut = {"x-fake-mode": json.dumps({"mode": "cut_stream", "after_chunks": 4})}
    script()
    text = ""
    try:
        with ant().messages.stream(model="claude", max_tokens=64, messages=ANTHROPIC_MESSAGES,
                                   extra_headers=cut) as s:
            for t in s.text_stream:
                text += t
        check("cut stream (anthropic): anthropic.APIError", False, f"the stream ended normally with {text!r}")
    except anthropic.APIError as e:
        check("cut stream (anthropic): anthropic.APIError", echo(PROMPT).startswith(text) and text != echo(PROMPT),
              f"got {type(e).__name__} after {text!r}")

    script(*status(500, "gpt-flaky", 2), {"mode": "cut_stream", "after_chunks": 4, "model": "claude-backup"})
    text = ""
    try:
        stream = oai().chat.completions.create(model="gpt-fallback", messages=OPENAI_MESSAGES, stream=True)
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
        check("cut stream across protocols (openai ← anthropic): openai.APIError", False,
              f"the stream ended normally with {text!r}")
    except openai.APIError as e:
        check("cut stream across protocols (openai ← anthropic): openai.APIError",
              echo(PROMPT).startswith(text) and text != echo(PROMPT), f"got {type(e).__name__} after {text!r}")


def all_circuits_open():
    # oa-trip's breaker opens after 2 failed calls (gateway_sdks.sh): fail it until it does
    script()
    statuses = []
    for _ in range(4):
        try:
            oai().chat.completions.create(model="gpt-trip", messages=OPENAI_MESSAGES, extra_headers=mode_header(500))
            statuses.append(200)
        except openai.APIStatusError as e:
            statuses.append(e.status_code)
            if e.status_code == 503:
                break
    check("failing deployment: the upstream's 500 first, then 503", statuses[:1] == [500] and statuses[-1:] == [503],
          f"got {statuses}")
    script()
    e = expect_error("circuit open (openai)", openai.InternalServerError, 503,
                     lambda: oai().chat.completions.create(model="gpt-trip", messages=OPENAI_MESSAGES))
    check("circuit open (openai): code and Retry-After", e is not None and e.code == "circuit_open"
          and e.response.headers.get("retry-after", "").isdigit(), f"got code {getattr(e, 'code', None)!r}")

    # an operator forces the other deployment of claude-trip open: the whole chain is open
    forced = gateway_json("POST", "/v1/circuits/an-trip/force-open")
    check("force-open an-trip", forced.get("state") == "forced_open", f"got {forced}")
    e = expect_error("all circuits open (anthropic)", anthropic.InternalServerError, 503,
                     lambda: ant().messages.create(model="claude-trip", max_tokens=64, messages=ANTHROPIC_MESSAGES))
    check("all circuits open (anthropic): overloaded_error", e is not None and error_type(e) == "overloaded_error"
          and e.response.headers.get("retry-after", "").isdigit(), f"got {getattr(e, 'body', None)!r}")
    expect_error("all circuits open (anthropic, streaming)", anthropic.APIStatusError, 503,
                 lambda: ant().messages.create(model="claude-trip", max_tokens=64, messages=ANTHROPIC_MESSAGES,
                                               stream=True))
    check("all circuits open: nothing went upstream", upstream_requests() == [], "the fake got requests")
    states = {c["id"]: c["state"] for c in gateway_json("GET", "/v1/circuits")["circuits"]}
    check("/v1/circuits", (states.get("oa-trip"), states.get("an-trip"), states.get("oa-main"))
          == ("open", "forced_open", "closed"), f"got {states}")


OPENAI_RESPONSE_TOOLS = [{"type": "function", "name": "get_weather", "description": "the weather in a city",
                          "parameters": WEATHER_SCHEMA}]


def responses_api():
    """The Responses API (what Codex and the Vercel AI SDK call), served by Chat and Anthropic
    deployments through the gateway's translation."""
    for model, deployment, upstream in (("gpt", "oa-main", "/v1/chat/completions"), ("claude", "an-main", "/v1/messages")):
        name = f"responses.create → {deployment}"
        script()
        raw = oai().responses.with_raw_response.create(model=model, instructions=SYSTEM, input=PROMPT)
        r = raw.parse()
        check(f"{name}: output_text", r.output_text == echo(PROMPT), f"got {r.output_text!r}")
        check(f"{name}: status and model", (r.status, r.model) == ("completed", model), f"got {(r.status, r.model)}")
        check(f"{name}: usage", (r.usage.input_tokens, r.usage.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS),
              f"got {r.usage!r}")
        helix_headers(name, raw.headers, deployment)
        sent = upstream_requests()
        check(f"{name}: upstream path", [x["path"] for x in sent] == [upstream], f"got {[x['path'] for x in sent]}")

        name = f"responses.create(stream=True) → {deployment}"
        script()
        deltas, kinds, final = [], [], None
        for event in oai().responses.create(model=model, instructions=SYSTEM, input=PROMPT, stream=True):
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            if event.type == "response.completed":
                final = event.response
        check(f"{name}: text deltas", "".join(deltas) == echo(PROMPT), f"got {''.join(deltas)!r}")
        check(f"{name}: event order", kinds[:2] == ["response.created", "response.in_progress"]
              and kinds[-1:] == ["response.completed"], f"got {kinds}")
        check(f"{name}: final usage", final is not None and final.usage is not None
              and (final.usage.input_tokens, final.usage.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS),
              f"got {final!r}")

    name = "responses.stream() helper"
    script()
    with oai().responses.stream(model="gpt", input=PROMPT) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    check(f"{name}: text", text == echo(PROMPT) and final.output_text == echo(PROMPT), f"got {text!r}")

    name = "responses tools, then previous_response_id"
    script({"mode": "tool_call", "model": "gpt-main"})
    r = oai().responses.create(model="gpt", input=TOOL_PROMPT, tools=OPENAI_RESPONSE_TOOLS)
    calls = [o for o in r.output if o.type == "function_call"]
    check(f"{name}: function_call", len(calls) == 1 and calls[0].name == "get_weather"
          and json.loads(calls[0].arguments) == {"echo": TOOL_PROMPT}, f"got {r.output!r}")
    if calls:
        script()
        r2 = oai().responses.create(model="gpt", previous_response_id=r.id, tools=OPENAI_RESPONSE_TOOLS,
                                    input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                                            "output": "sunny"}])
        check(f"{name}: an answer", r2.status == "completed" and bool(r2.output_text), f"got {r2!r}")
        sent = upstream_requests()
        roles = [m.get("role") for m in (sent[-1]["body"].get("messages") if sent else [])]
        check(f"{name}: the earlier turn was replayed", roles == ["user", "assistant", "tool"], f"got {roles}")


def count_tokens_and_embeddings():
    name = "messages.count_tokens → anthropic"
    script()
    raw = ant().messages.with_raw_response.count_tokens(model="claude", system=SYSTEM, messages=ANTHROPIC_MESSAGES)
    n = raw.parse()
    check(f"{name}: input_tokens", n.input_tokens == INPUT_TOKENS, f"got {n.input_tokens}")
    check(f"{name}: counted, not estimated", raw.headers.get("x-helix-token-count") is None
          and raw.headers.get("x-helix-deployment") == "an-main", f"got {dict(raw.headers)}")
    name = "messages.count_tokens, no anthropic deployment"
    raw = ant().messages.with_raw_response.count_tokens(model="gpt", system=SYSTEM, messages=ANTHROPIC_MESSAGES)
    check(f"{name}: estimated", raw.headers.get("x-helix-token-count") == "estimated" and raw.parse().input_tokens > 0,
          f"got {dict(raw.headers)}")
    name = "embeddings.create"
    script()
    e = oai().embeddings.create(model="gpt", input=["one two", "three"])
    check(f"{name}: vectors", len(e.data) == 2 and all(len(d.embedding) > 0 for d in e.data), f"got {e!r}")
    check(f"{name}: model name kept", e.model == "gpt", f"got {e.model!r}")


SCENARIOS = [
    models_are_listed,
    openai_same_protocol,
    anthropic_same_protocol,
    responses_api,
    count_tokens_and_embeddings,
    anthropic_falls_back_to_openai,
    openai_falls_back_to_anthropic,
    anthropic_tool_call_through_openai,
    openai_tool_call_through_anthropic,
    wrong_key_is_refused,
    unknown_model_is_not_found,
    upstream_bad_request,
    rate_limited_everywhere,
    budget_is_enforced,
    stream_cut_midway,
    all_circuits_open,
]


def main():
    # the SDKs warn about model names they know; ours are the gateway's
    warnings.simplefilter("ignore", DeprecationWarning)
    print(f"openai {openai.__version__}, anthropic {anthropic.__version__}; gateway {gateway}", flush=True)
    for scenario in SCENARIOS:
        before = (passed, len(failures))
        try:
            scenario()
        except Exception as e:  # noqa: BLE001 - an unexpected exception fails the scenario, the rest still run
            traceback.print_exc()
            check(scenario.__name__, False, f"{type(e).__module__}.{type(e).__name__}: {e}")
        ok, bad = passed - before[0], len(failures) - before[1]
        print(f"-- {scenario.__name__}: {ok} passed, {bad} failed", flush=True)
    upstream_requests()
    check("the gateway keys never reached an upstream", not secret_leaks, f"in {secret_leaks}")
    if failures:
        print("failed:")
        for f in failures:
            print(f"  {f}")
    print(f"gateway sdks: {passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
