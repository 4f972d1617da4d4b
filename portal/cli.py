"""`flask --app portal …` commands."""
from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from portal.clock import utcnow


def init_app(app: Flask) -> None:
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(sweep_command)


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
@click.argument("which", type=click.Choice(["all", "holds", "events", "signatures", "refunds"]), default="all")
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
