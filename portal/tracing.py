"""OpenTelemetry traces: spans for requests, database calls, Stripe calls and jobs, exported over OTLP/HTTP.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set: then nothing is instrumented, `span()` is a `nullcontext` and the
job carrier is empty, so tracing costs nothing. When on, each app has its own tracer provider (in
`app.extensions["tracer_provider"]`, never the process-global one, so several apps in one process stay apart);
the web request's trace context is written into the jobs it queues (W3C `traceparent`, see `carrier()`) and each
job's span continues that trace, in the web process or in an RQ worker.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

from flask import Flask, current_app, has_app_context

SERVICE_NAME = "studio-portal"


def _provider():
    if not has_app_context():
        return None
    return current_app.extensions.get("tracer_provider")


def span(name: str, **attributes):
    """A child span of whatever is current (a request, a job), or nothing when tracing is off."""
    provider = _provider()
    if provider is None:
        return nullcontext()
    return provider.get_tracer(__name__).start_as_current_span(name, attributes=attributes)


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers, for a job to continue the trace (empty when off)."""
    if _provider() is None:
        return {}
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    headers: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(headers)
    return headers


@contextmanager
def job_span(name: str, headers: dict[str, str] | None, **attributes):
    """The span of one job run, a child of the request that queued it when `headers` carry its context."""
    provider = _provider()
    if provider is None:
        yield None
        return
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    # RQ hands the request's context over in `headers`; in-process jobs already run inside it (None).
    parent = TraceContextTextMapPropagator().extract(headers) if headers is not None else None
    with provider.get_tracer(__name__).start_as_current_span(f"job {name}", context=parent, kind=SpanKind.CONSUMER,
                                                             attributes=attributes) as current:
        yield current


@contextmanager
def continued(headers: dict[str, str]):
    """Run an in-process job inside the trace context it was queued from."""
    if not headers:
        yield
        return
    from opentelemetry import context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    token = context.attach(TraceContextTextMapPropagator().extract(headers))
    try:
        yield
    finally:
        context.detach(token)


def _otlp_provider(endpoint: str, service: str):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    return provider


def init_app(app: Flask) -> None:
    """Instrument the app when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (or a provider is given in the
    `TRACER_PROVIDER` config key, as the tests do with an in-memory exporter)."""
    settings = app.config["PORTAL_SETTINGS"]
    provider = app.config.get("TRACER_PROVIDER")
    if provider is None and settings.otel_endpoint:
        provider = _otlp_provider(settings.otel_endpoint, settings.otel_service_name)
    if provider is None:
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import NoOpMeter

    from portal.extensions import db

    app.extensions["tracer_provider"] = provider
    FlaskInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="metrics,healthz,static")
    with app.app_context():
        engine = db.engine
    usage = NoOpMeter("portal").create_up_down_counter("db.client.connections.usage")
    EngineTracer(provider.get_tracer("portal.database"), engine, usage)
