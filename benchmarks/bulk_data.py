"""Large, realistic data sets for the reconciliation benchmark and the index tests, written with set-based SQL.

PostgreSQL only (it uses `generate_series`). Most rows are healthy (confirmed and paid, processed events), as in a
real portal; a few per thousand are in the states the reconciliation queries look for, so the queries' plans are
what production would see. The reconciliation benchmark and the index tests use it.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text

from portal.extensions import db
from portal.services import booking_totals

#: Resources the bookings are spread over (each booking an hour, back to back, so none overlap).
RESOURCES = 20


def fill(studio_id: int, student_id: int, package_id: int, resource_ids: list[int], *, bookings: int, events: int,
         now: datetime) -> None:
    """Add `bookings` bookings with their payments (and a few refunds) and `events` webhook events, and count every
    booking of the database into the metrics' running totals."""
    # Back to back on every resource, ending two months ahead: most lessons are in the past, as in a portal that
    # has run for years, and the next two months are booked.
    start = now - timedelta(hours=bookings // max(1, len(resource_ids))) + timedelta(days=60)
    params = {"studio": studio_id, "student": student_id, "package": package_id, "start": start, "now": now,
              "n": bookings, "resources": resource_ids, "k": len(resource_ids)}
    db.session.execute(text("""
        INSERT INTO bookings (studio_id, student_id, package_id, resource_id, start_at, end_at, occupied_until,
                              status, hold_expires_at, price_minor, currency, updated_at, created_at, reschedule_count,
                              ical_sequence)
        SELECT :studio, :student, :package, (:resources)[1 + (i % :k)],
               :start + ((i / :k) * interval '1 hour'), :start + ((i / :k) * interval '1 hour') + interval '1 hour',
               :start + ((i / :k) * interval '1 hour') + interval '1 hour',
               CASE WHEN i % 1000 = 1 THEN 'held' WHEN i % 10 = 2 THEN 'expired' WHEN i % 20 = 3 THEN 'cancelled'
                    ELSE 'confirmed' END,
               booked + interval '31 minutes', 6500, 'usd', booked + interval '2 minutes', booked, 0, 0
        FROM generate_series(1, :n) AS i,
             -- booked two days ahead, or (lessons further out) within the last 90 days: never in the future
             LATERAL (SELECT LEAST(:start + ((i / :k) * interval '1 hour') - interval '2 days',
                                   :now - ((i % 90) * interval '1 day') - interval '1 hour') AS booked) AS made"""),
        params)
    db.session.execute(text("""
        INSERT INTO payments (studio_id, booking_id, checkout_session_id, checkout_url, payment_intent_id, amount_minor,
                              currency, amount_received_minor, received_currency, amount_refunded_minor, status, flag,
                              flag_detail, last_error, paid_at, updated_at, created_at)
        SELECT b.studio_id, b.id, 'cs_bulk_' || b.id, '', 'pi_bulk_' || b.id, 6500, 'usd',
               CASE WHEN b.status IN ('confirmed', 'cancelled') THEN 6500 END,
               CASE WHEN b.status IN ('confirmed', 'cancelled') THEN 'usd' END, 0,
               CASE WHEN b.status = 'expired' AND b.id % 2000 = 2 THEN 'mismatch'
                    WHEN b.status IN ('confirmed', 'cancelled') THEN 'paid'
                    WHEN b.status = 'held' THEN 'pending' ELSE 'expired' END,
               NULL, '', '', CASE WHEN b.status IN ('confirmed', 'cancelled') THEN b.created_at END,
               b.updated_at, b.created_at
        FROM bookings AS b WHERE b.studio_id = :studio AND NOT EXISTS (
            SELECT 1 FROM payments AS p WHERE p.booking_id = b.id)"""), {"studio": studio_id})
    db.session.execute(text("""
        INSERT INTO refunds (studio_id, payment_id, provider_refund_id, purpose_key, amount_minor, currency, reason,
                             status, attempts, retries, last_error, updated_at, created_at)
        SELECT p.studio_id, p.id, 're_bulk_' || p.id, 'bulk:' || p.id, 6500, 'usd', 'requested_by_customer',
               CASE WHEN p.id % 500 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 0, '', p.updated_at, p.updated_at
        FROM payments AS p JOIN bookings AS b ON b.id = p.booking_id
        WHERE b.studio_id = :studio AND b.status = 'cancelled'"""), {"studio": studio_id})
    db.session.execute(text("""
        INSERT INTO webhook_events (provider_event_id, type, object_id, payload, status, attempts, deliveries,
                                    last_error, studio_id, received_at, updated_at, processed_at)
        SELECT 'evt_bulk_' || i, 'checkout.session.completed', 'cs_bulk_' || i, '{}',
               CASE WHEN i % 5000 = 11 THEN 'dead' WHEN i % 20000 = 13 THEN 'queued' ELSE 'processed' END,
               1, 1, '', :studio, :now - ((i % 5000) * interval '1 minute'), :now - ((i % 5000) * interval '1 minute'),
               :now - ((i % 5000) * interval '1 minute')
        FROM generate_series(1, :n) AS i"""), {"studio": studio_id, "now": now, "n": events})
    db.session.execute(text("""
        INSERT INTO drift_findings (kind, provider_object_id, studio_id, payment_id, detail, detected_at, last_seen_at,
                                    resolved_at, created_at)
        SELECT 'missing_event', 'evt_drift_' || i, :studio, NULL, '', :now - (i * interval '1 minute'),
               :now - (i * interval '1 minute'), CASE WHEN i % 1000 = 0 THEN NULL ELSE :now END, :now
        FROM generate_series(1, :n) AS i"""), {"studio": studio_id, "now": now, "n": max(1, events // 5)})
    booking_totals.rebuild()  # the bookings above were written around the state machine that keeps them
    db.session.commit()
    db.session.execute(text("ANALYZE"))
