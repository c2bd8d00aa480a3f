"""The operator's Flask CLI group ``acr``: ``flask --app 'webhook_service:create_app()' acr ...``.

* ``acr dead-letters [--kind K] [--limit N]``: dead letters, newest first, one JSON object a line;
* ``acr retry ID``: retry one dead letter (as ``POST /v1/dead-letters/{id}/retry``);
* ``acr redeliver --since T``: redeliver every notification that ran out of retries since the ISO time T
  (and was not delivered since);
* ``acr rebuild-sessions [--sid S | --since T]``: re-apply the stored callbacks of one session, of the
  sessions with a callback since T, or of every session, to rebuild their state (idempotent).

Every retry, redelivery and rebuild is written on the affected recording's timeline.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup

from webhook_service.api.deadletters import retry_dead_letter
from webhook_service.services import get_services
from workers import deadletters
from workers.recordings import load_delivery

acr = AppGroup("acr", help="Operations: dead letters, retries, notification redelivery, session rebuilds.")


def _echo(value: dict[str, Any]) -> None:
    click.echo(json.dumps(value, separators=(",", ":"), sort_keys=False))


def _since_ms(text: str) -> int:
    """Milliseconds of an ISO 8601 time (``2025-01-31T10:42:00Z``; without an offset: UTC)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {text!r}", param_hint="--since") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@acr.command("dead-letters")
@click.option("--kind", type=click.Choice(deadletters.KINDS), help="only this kind")
@click.option("--limit", type=click.IntRange(1, deadletters.MAX_LIST), default=50, show_default=True)
def list_dead_letters(kind: str | None, limit: int) -> None:
    """List dead letters, newest first (one JSON object a line)."""
    found, next_cursor = deadletters.list_entries(get_services().redis, kind=kind, limit=limit)
    for entry in found:
        _echo(entry.view())
    if next_cursor is not None:
        click.echo(f"# more: older than {next_cursor}", err=True)


@acr.command("retry")
@click.argument("entry_id")
def retry(entry_id: str) -> None:
    """Retry one dead letter by its id."""
    services = get_services()
    try:
        retried = retry_dead_letter(services, entry_id)
    except deadletters.NotRetryableError as exc:
        raise click.ClickException(f"not retryable: {exc}") from None
    if retried is None:
        raise click.ClickException(f"no dead letter {entry_id!r}")
    _echo(retried)


@acr.command("redeliver")
@click.option("--since", "since", required=True, help="ISO 8601 time, e.g. 2025-01-31T10:00:00Z")
def redeliver(since: str) -> None:
    """Redeliver every notification that ran out of retries since a time (same webhook-id each)."""
    services = get_services()
    since_ms = _since_ms(since)
    done: set[str] = set()
    for entry in deadletters.since(services.redis, since_ms, kind="notification"):
        webhook_id = entry.text("webhookId") or ""
        if webhook_id in done:
            continue
        done.add(webhook_id)
        held = load_delivery(services.redis, webhook_id)
        if held is not None and held.get("delivered"):
            _echo({"webhookId": webhook_id, "skipped": "delivered since"})
            continue
        try:
            retried = deadletters.retry(
                services.redis,
                entry.id,
                services.inbox,
                notify_url=services.settings.notify_url,
                scale=services.settings.recording_time_scale,
                retention_seconds=services.settings.session_retention_seconds,
            )
        except deadletters.NotRetryableError as exc:
            _echo({"webhookId": webhook_id, "skipped": str(exc)})
            continue
        if retried is not None:
            _echo({"webhookId": webhook_id, "deadLetter": entry.id, "redelivery": "queued"})
    click.echo(f"# {len(done)} notification(s) looked at", err=True)


@acr.command("rebuild-sessions")
@click.option("--sid", help="one session")
@click.option("--since", "since", help="sessions with a callback since this ISO 8601 time")
def rebuild_sessions(sid: str | None, since: str | None) -> None:
    """Rebuild session state from the stored callbacks (idempotent; the same state the live drains reach)."""
    if sid is not None and since is not None:
        raise click.UsageError("give --sid or --since, not both")
    connection = get_services().redis
    sids = (
        [sid]
        if sid is not None
        else deadletters.sessions_since(connection, None if since is None else _since_ms(since))
    )
    rebuilt = changed = 0
    for one in sids:
        result = deadletters.rebuild_session(connection, one)
        if result is None:
            if sid is not None:
                raise click.ClickException(f"no session {sid!r}")
            continue
        rebuilt += 1
        changed += result.changed
        _echo(result.view())
    click.echo(f"# {rebuilt} session(s) rebuilt, {changed} changed", err=True)


def init_app(app: Flask) -> None:
    app.cli.add_command(acr)
