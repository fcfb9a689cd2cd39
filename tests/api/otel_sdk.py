"""A real OpenTelemetry client against the trace-collector: the official Python SDK with its
OTLP/HTTP exporters (protobuf, the SDK default) sends a small agent run (a phase span, an LLM call
with GenAI attributes, a tool call); the spans must come back from Helix's query API. Then the
SDK's log exporter (a log written inside a span lands in that span's trace, under it) and metric
exporter (a counter and a histogram land as events of their session's trace, under its run).

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
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
import logging
import uuid

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

def flatten(nodes, out):
    for n in nodes or []:
        out.append(n["span"])
        flatten(n.get("children"), out)
    return out


def check_logs(service):
    resource = Resource.create({"service.name": service, "deployment.environment": "ci"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers=auth)))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{base}/v1/logs", headers=auth)))
    log = logging.getLogger(f"helix.tests.{service}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
    tracer = tracer_provider.get_tracer("helix.tests")
    with tracer.start_as_current_span("phase build", attributes={"helix.span.kind": "phase"}) as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        span_id = format(span.get_span_context().span_id, "016x")
        log.info("compiling 12 files", extra={"files": 12})
        log.error("linker failed: undefined reference to `main'")
    tracer_provider.shutdown()
    logger_provider.shutdown()
    deadline = time.time() + 20
    spans = []
    while time.time() < deadline:
        with get(f"{base}/v1/traces/{trace_id}") as res:
            spans = flatten(json.load(res)["spans"], [])
        if len(spans) >= 3:
            break
        time.sleep(0.2)
    logs = {s["name"]: s for s in spans if s["span_id"] != span_id}
    assert set(logs) == {"compiling 12 files", "linker failed: undefined reference to `main'"}, spans
    info, error = logs["compiling 12 files"], logs["linker failed: undefined reference to `main'"]
    assert info["parent_span_id"] == span_id, info
    assert info["attributes"]["files"] == 12, info
    assert info["attributes"]["log.severity"] == "INFO", info
    assert info["attributes"]["deployment.environment"] == "ci", info
    assert error["status"] == "error", error


def check_metrics(service):
    session = str(uuid.uuid4())
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics", headers=auth), export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader])
    meter = provider.get_meter("helix.tests")
    runs = meter.create_counter("agent.runs", unit="1")
    latency = meter.create_histogram("agent.step.duration", unit="s")
    runs.add(3, {"session.id": session})
    for x in (0.5, 1.5, 4.0):
        latency.record(x, {"session.id": session})
    provider.shutdown()  # exports once
    name = f"{service} session {session}"
    deadline = time.time() + 20
    trace = None
    while time.time() < deadline and trace is None:
        with get(f"{base}/v1/traces?project={service}") as res:
            trace = next((t for t in json.load(res)["traces"] if t["name"] == name), None)
        time.sleep(0.2)
    assert trace, f"no trace named {name!r}"
    with get(f"{base}/v1/traces/{trace['trace_id']}") as res:
        spans = flatten(json.load(res)["spans"], [])
    points = {s["name"]: s for s in spans if s["kind"] == "other"}
    assert points["agent.runs"]["attributes"]["metric.value"] == 3, points
    assert points["agent.runs"]["attributes"]["metric.temporality"] == "cumulative", points
    h = points["agent.step.duration"]["attributes"]
    assert (h["metric.count"], h["metric.sum"], h["metric.min"], h["metric.max"]) == (3, 6.0, 0.5, 4.0), h
    assert len(spans) == 3, spans  # the session's run and the two points


check("otel-sdk-check", Compression.NoCompression)
check("otel-sdk-gzip", Compression.Gzip)
check_logs("otel-sdk-logs")
check_metrics("otel-sdk-metrics")
print("otel sdk: 4 passed, 0 failed")
