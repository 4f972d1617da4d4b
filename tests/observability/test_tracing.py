"""OpenTelemetry: off (and free) without an endpoint; with one, a request, its database calls, the job it queues
and that job's Stripe call form one trace, in-process and through RQ. Spans go to an in-memory exporter."""
from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from portal import tracing
from portal.config import load_settings
from tests.conftest import stripe_env
from tests.lessons.conftest import days_ahead, local
from tests.payments.helpers import signed_post


@pytest.fixture
def exporter():
    return InMemorySpanExporter()


@pytest.fixture
def app_overrides(exporter):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return {"TRACER_PROVIDER": provider, "METRICS_DB_CACHE_SECONDS": 0}


def _named(spans, prefix):
    return [s for s in spans if s.name.startswith(prefix)]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_paid_booking_is_one_trace_from_the_webhook_request_to_the_jobs_stripe_call(studio, paid_lesson,
                                                                                       exporter):
    paid_lesson(local(studio, days_ahead(studio, 2), "10:00"))
    spans = exporter.get_finished_spans()
    (request,) = [s for s in spans if s.name == "POST /webhooks/stripe"]
    # The acknowledgement's own INSERT is a span of the request (on PostgreSQL it goes straight to the driver).
    stored = [s for s in spans if "webhook_signatures" in s.attributes.get("db.statement", "")
              and s.parent is not None and s.parent.span_id == request.context.span_id]
    assert stored and all(s.attributes["db.statement"].split(None, 1)[0] in s.name for s in stored)
    (job,) = _named(spans, "job drain_webhook_events")
    assert job.parent is not None and job.parent.span_id == request.context.span_id
    assert job.context.trace_id == request.context.trace_id
    (retrieve,) = [s for s in _named(spans, "stripe checkout.sessions.retrieve")
                   if s.context.trace_id == request.context.trace_id]
    assert retrieve.parent.span_id == job.context.span_id
    assert retrieve.attributes["stripe.operation"] == "checkout.sessions.retrieve"
    queries = [s for s in spans if s.attributes.get("db.statement") and s.context.trace_id == job.context.trace_id]
    assert any("webhook_events" in s.attributes["db.statement"] for s in queries)
    assert request.attributes["http.route"] == "/webhooks/stripe"


@pytest.mark.redis
def test_the_trace_context_travels_through_rq(app_env, sqlite_database, tmp_path, redis_url, exporter,
                                              app_overrides):
    import redis
    from rq import Queue, SimpleWorker

    from tests.conftest import build_app, empty_tables

    redis.Redis.from_url(redis_url).flushdb()
    app = build_app(sqlite_database, tmp_path / "instance", env={**app_env, "REDIS_URL": redis_url},
                    **app_overrides)
    try:
        event = {"id": "evt_trace_rq", "object": "event", "type": "customer.created", "created": int(time.time()),
                 "data": {"object": {"id": "cus_1", "object": "customer"}}}
        assert signed_post(app.test_client(), event).status_code == 200
        (request,) = [s for s in exporter.get_finished_spans() if s.name == "POST /webhooks/stripe"]
        queue: Queue = app.extensions["dispatcher"].queue
        (queued,) = queue.get_jobs()
        assert f"{request.context.trace_id:032x}" in queued.meta["trace"]["traceparent"]
        with app.app_context():  # an RQ worker runs its jobs inside the app, as `python -m worker` does
            SimpleWorker([queue], connection=queue.connection).work(burst=True)
        (job,) = _named(exporter.get_finished_spans(), "job drain_webhook_events")
        assert job.context.trace_id == request.context.trace_id and job.parent.span_id == request.context.span_id
    finally:
        empty_tables(app)


def test_tracing_is_off_without_an_endpoint(stripe_standin, sqlite_database, tmp_path):
    from tests.conftest import build_app, empty_tables

    app = build_app(sqlite_database, tmp_path / "instance", env=stripe_env(stripe_standin))
    try:
        assert "tracer_provider" not in app.extensions
        with app.test_request_context("/"):
            assert tracing.carrier() == {}
            with tracing.span("anything") as current:
                assert current is None
    finally:
        empty_tables(app)
    settings = load_settings(env={"PORTAL_ENV": "test", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert settings.otel_endpoint == "http://127.0.0.1:4318" and settings.otel_service_name == "studio-portal"


def test_an_endpoint_turns_on_the_otlp_exporter(stripe_standin, sqlite_database, tmp_path):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from tests.conftest import build_app, empty_tables

    app = build_app(sqlite_database, tmp_path / "instance",
                    env={**stripe_env(stripe_standin), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9/"})
    try:
        provider = app.extensions["tracer_provider"]
        (processor,) = provider._active_span_processor._span_processors
        assert isinstance(processor.span_exporter, OTLPSpanExporter)
        assert processor.span_exporter._endpoint == "http://127.0.0.1:9/v1/traces"
    finally:
        provider.shutdown()
        empty_tables(app)
