"""A real OpenTelemetry client against the trace-collector: the official Python SDK with its
OTLP/HTTP exporter (protobuf, the SDK default) sends a small agent run (a phase span, an LLM call
with GenAI attributes, a tool call); the spans must come back from Helix's query API.

usage: otel_sdk.py COLLECTOR_URL     (e.g. http://127.0.0.1:7701)
"""
import json
import sys
import time
import urllib.error
import urllib.request

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

base = sys.argv[1].rstrip("/")
# a collector that requires tokens: the exporter sends one, as any OTLP exporter can be told to
token = sys.argv[2] if len(sys.argv) > 2 else None
auth = {"authorization": f"Bearer {token}"} if token else {}


def get(url):
    return urllib.request.urlopen(urllib.request.Request(url, headers=auth))


def check(service, compression):
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces", compression=compression, headers=auth)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("helix.tests")

    with tracer.start_as_current_span("phase development", attributes={"helix.span.kind": "phase", "helix.phase": "development"}) as phase:
        trace_id = format(phase.get_span_context().trace_id, "032x")
        with tracer.start_as_current_span("chat claude-sonnet", attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet",
            "gen_ai.usage.input_tokens": 1234,
            "gen_ai.usage.output_tokens": 56,
            "helix.cost_usd": 0.0042,
        }):
            time.sleep(0.01)
        with tracer.start_as_current_span("execute_tool bash", attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "bash"}) as tool:
            tool.set_status(trace.Status(trace.StatusCode.ERROR, "exit 1"))

    provider.force_flush()
    provider.shutdown()

    with get(f"{base}/v1/traces/{trace_id}") as res:
        tree = json.load(res)
    summary = tree["summary"]
    assert summary["spans"] == 3, tree
    assert summary["project"] == service, summary
    assert summary["status"] == "error", summary
    assert summary["phases"] == ["development"], summary
    root = tree["spans"][0]
    assert root["span"]["kind"] == "phase", root["span"]
    kids = {c["span"]["name"]: c["span"] for c in root["children"]}
    llm = kids["chat claude-sonnet"]
    assert llm["kind"] == "llm_call", llm
    assert llm["attributes"]["gen_ai.usage.input_tokens"] == 1234, llm
    assert kids["execute_tool bash"]["kind"] == "tool_call"
    assert kids["execute_tool bash"]["status"] == "error"
    with get(f"{base}/v1/traces?project={service}") as res:
        listing = json.load(res)
    assert any(t["trace_id"] == trace_id for t in listing["traces"]), listing


if token:
    # and without the token the collector refuses the export
    try:
        urllib.request.urlopen(urllib.request.Request(f"{base}/v1/traces", data=b"{}", headers={"content-type": "application/json"}))
        raise AssertionError("an export without a token was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 401, e.code

check("otel-sdk-check", Compression.NoCompression)
check("otel-sdk-gzip", Compression.Gzip)
print("otel sdk: 2 passed, 0 failed")
