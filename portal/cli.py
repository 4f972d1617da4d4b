"""`flask --app portal …` commands."""
from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from portal.clock import utcnow


def init_app(app: Flask) -> None:
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(sweep_command)
    app.cli.add_command(ops_group)


@click.command("seed-demo")
@with_appcontext
def seed_demo_command():
    """Create the demo studios, resources, packages and users (development only)."""
    from portal.services.demo import seed_demo

    if current_app.config["PORTAL_SETTINGS"].is_production:
        raise click.ClickException("refusing to seed demo data into a production configuration")
    seed_demo(utcnow())
    click.echo("demo data ready")


@click.command("sweep")
@click.argument("which", default="all",
                type=click.Choice(["all", "holds", "events", "signatures", "refunds", "credits", "waitlist"]))
@with_appcontext
def sweep_command(which):
    """Run the periodic sweeps now: release expired holds, re-queue stuck webhook events and unsent refunds,
    prune old signatures."""
    from portal.jobs import refunds, sweeps

    if which in ("all", "holds"):
        click.echo(f"released {sweeps.release_expired_holds()} expired holds")
    if which in ("all", "events"):
        click.echo(f"re-queued {sweeps.requeue_stuck_events()} stuck webhook events")
    if which in ("all", "refunds"):
        click.echo(f"re-queued {refunds.requeue_stale_refunds()} unsent refunds")
    if which in ("all", "signatures"):
        click.echo(f"pruned {sweeps.prune_webhook_signatures()} old webhook signatures")
    if which in ("all", "credits"):
        click.echo(f"wrote off {sweeps.expire_credits()} expired lesson credits")
    if which in ("all", "waitlist"):
        click.echo(f"waitlist: {sweeps.waitlist_offers()}")


@click.group("ops")
def ops_group():
    """On-call work without a browser: reconciliation queries and the console's repairs."""


def _ops_actor():
    """CLI repairs are audited as the operating-system user who ran them (`OPS_OPERATOR` overrides it)."""
    import getpass

    from portal.services.audit import Actor

    return Actor("user", f"cli:{current_app.config['PORTAL_SETTINGS'].ops_operator or getpass.getuser()}")


@ops_group.command("check")
@click.option("--full", is_flag=True, help="check the invariants over every booking, not only recent changes")
@with_appcontext
def ops_check(full):
    """Print each query's count and oldest age; exit 1 when a must-be-empty query has items or an age threshold
    is passed (for cron, monitoring or a deploy gate)."""
    from portal.services import reconciliation

    overview = reconciliation.overview(utcnow(), full=full)
    failing = set(reconciliation.failing(overview))
    for name, summary in overview.items():
        age = f"{summary.oldest_age_seconds:.0f}s" if summary.oldest_age_seconds is not None else "-"
        click.echo(f"{'FAIL' if name in failing else 'ok  '} {name:<26} {summary.count:>6}  oldest {age}")
    if failing:
        raise SystemExit(1)


@ops_group.command("list")
@click.argument("query")
@click.option("--studio", default=None, help="only this studio (slug)")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100_000))
@with_appcontext
def ops_list(query, studio, limit):
    """Print QUERY's items as JSON lines, oldest first."""
    import json

    from sqlalchemy import select

    from portal import tenancy
    from portal.extensions import db
    from portal.models import Studio
    from portal.services import reconciliation

    if query not in reconciliation.QUERIES:
        raise click.BadParameter(f"one of {', '.join(reconciliation.QUERIES)}", param_hint="QUERY")
    filters = {}
    if studio:
        with tenancy.all_tenants():
            filters["studio_id"] = db.session.scalar(select(Studio.id).where(Studio.slug == studio))
        if filters["studio_id"] is None:
            raise click.BadParameter(f"no studio {studio!r}", param_hint="--studio")
    for item in reconciliation.items(query, utcnow(), limit=limit, **filters):
        click.echo(json.dumps(item, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)))


def _run_repair(action, *args, **kwargs):
    from portal.services.errors import DomainError

    try:
        return action(*args, actor=_ops_actor(), now=utcnow(), **kwargs)
    except DomainError as problem:
        raise click.ClickException(problem.message) from None


@ops_group.command("replay")
@click.argument("event_id", type=int)
@click.option("--note", required=True, help="why (goes in the audit log)")
@with_appcontext
def ops_replay(event_id, note):
    """Queue webhook event EVENT_ID again (only when it is not processed)."""
    from portal.services import ops_actions

    _run_repair(ops_actions.replay_event, event_id, note=note)
    click.echo(f"event {event_id} queued again")


@ops_group.command("release")
@click.argument("booking_id", type=int)
@click.option("--note", required=True, help="why (goes in the audit log)")
@with_appcontext
def ops_release(booking_id, note):
    """Release the expired hold of booking BOOKING_ID."""
    from portal.payments import get_provider
    from portal.services import ops_actions

    _run_repair(ops_actions.release_hold, booking_id, note=note, provider=get_provider())
    click.echo(f"booking {booking_id} released")


@ops_group.command("retry-refund")
@click.argument("refund_id", type=int)
@click.option("--note", required=True, help="why (goes in the audit log)")
@with_appcontext
def ops_retry_refund(refund_id, note):
    """Send failed refund REFUND_ID again (after checking Stripe does not already have it)."""
    from portal.payments import get_provider
    from portal.services import ops_actions

    _run_repair(ops_actions.retry_refund, refund_id, note=note, provider=get_provider())
    click.echo(f"refund {refund_id} queued again")


@ops_group.command("refetch")
@click.argument("payment_id", type=int)
@click.option("--note", required=True, help="why (goes in the audit log)")
@with_appcontext
def ops_refetch(payment_id, note):
    """Re-fetch payment PAYMENT_ID's Checkout Session from Stripe and run fulfilment again."""
    from portal.payments import get_provider
    from portal.services import ops_actions

    status = _run_repair(ops_actions.refetch_session, payment_id, note=note, provider=get_provider())
    click.echo(f"payment {payment_id} is {status}")


@ops_group.command("refetch-pack")
@click.argument("purchase_id", type=int)
@click.option("--note", required=True, help="why (goes in the audit log)")
@with_appcontext
def ops_refetch_pack(purchase_id, note):
    """Re-fetch lesson pack purchase PURCHASE_ID's Checkout Session from Stripe (adds its credits once paid)."""
    from portal.payments import get_provider
    from portal.services import ops_actions

    status = _run_repair(ops_actions.refetch_pack, purchase_id, note=note, provider=get_provider())
    click.echo(f"pack purchase {purchase_id} is {status}")


@ops_group.command("drift")
@click.option("--hours", default=2, show_default=True, type=click.IntRange(1, 24 * 90), help="window to compare")
@with_appcontext
def ops_drift(hours):
    """Compare the last HOURS of Stripe's events and Checkout Sessions with the portal."""
    from datetime import timedelta

    from portal.payments import get_provider
    from portal.services import drift

    report = drift.scan(get_provider(), now=utcnow(), window=timedelta(hours=hours))
    click.echo(f"{report.events_seen} events, {report.sessions_seen} sessions: {report.found} new findings, "
               f"{report.cleared} cleared")


@ops_group.command("create-studio")
@click.option("--name", required=True)
@click.option("--slug", required=True, help="its address: /s/<slug>/")
@click.option("--timezone", "timezone_", required=True, help="IANA name, e.g. America/New_York")
@click.option("--currency", required=True, help="e.g. usd, gbp, eur")
@click.option("--locale", default="en_US", show_default=True, help="how dates read, e.g. en_GB")
@click.option("--admin-email", required=True, help="the first admin, invited by email")
@with_appcontext
def ops_create_studio(name, slug, timezone_, currency, locale, admin_email):
    """Open a studio and invite its first admin (a fresh production install starts this way, without demo data)."""
    from portal.services import studios

    studio = _run_repair(studios.create, studios.NewStudio(name, slug, timezone_, currency, locale, admin_email))
    click.echo(f"studio {studio.slug} created (id {studio.id}); invitation sent to {admin_email}")


def _studio_id(slug: str) -> int:
    from sqlalchemy import select

    from portal import tenancy
    from portal.extensions import db
    from portal.models import Studio

    with tenancy.all_tenants():
        studio_id = db.session.scalar(select(Studio.id).where(Studio.slug == slug))
    if studio_id is None:
        raise click.BadParameter(f"no studio {slug!r}", param_hint="SLUG")
    return studio_id


@ops_group.command("suspend-studio")
@click.argument("slug")
@click.option("--note", required=True, help="why (goes in the audit log)")
@with_appcontext
def ops_suspend_studio(slug, note):
    """Suspend studio SLUG: its pages say it is not taking bookings; booked lessons stand."""
    from portal.services import studios

    _run_repair(studios.suspend, _studio_id(slug), note=note)
    click.echo(f"studio {slug} suspended")


@ops_group.command("resume-studio")
@click.argument("slug")
@click.option("--note", required=True, help="why (goes in the audit log)")
@with_appcontext
def ops_resume_studio(slug, note):
    """Let suspended studio SLUG take bookings again."""
    from portal.services import studios

    _run_repair(studios.resume, _studio_id(slug), note=note)
    click.echo(f"studio {slug} takes bookings again")
