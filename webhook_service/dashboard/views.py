"""What the dashboard's pages show, read with the same functions as the API (no Flask here but the args)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
import redis
from rq import Worker

from webhook_service.api.deadletters import redeliver_notification, retry_dead_letter
from webhook_service.api.metrics import QUEUES, RedisCollector
from webhook_service.dashboard.timeline import draw
from webhook_service.services import Services
from workers import deadletters
from workers.core import schema
from workers.core.redact import redact
from workers.ncs import read_session
from workers.recordings import (
    MAX_CNAME_CHARS,
    RECORDING_ID,
    TERMINAL,
    WEBHOOK_ID,
    Recording,
    State,
    deliveries_of,
    list_recordings,
    load,
    load_delivery,
    send_command,
    timeline,
)

PAGE_SIZE = 50
_CURSOR = re.compile(r"[0-9]{1,19}")
STATES = tuple(s.value for s in State)
TERMINAL_STATES = tuple(s.value for s in State if s in TERMINAL)
#: Recordings whose notifications the notifications page gathers (newest first).
NOTIFICATION_RECORDINGS = 30


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: Any) -> str:
    """``2026-12-02 02:25:46`` (UTC) from epoch ms; empty for none."""
    if not isinstance(ms, int | float) or ms <= 0:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(ms: Any) -> str:
    if not isinstance(ms, int | float) or ms < 0:
        return ""
    seconds = int(ms // 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _metrics(services: Services) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The samples of one /metrics scrape, by metric name (the same reads as ``GET /metrics``)."""
    collector = RedisCollector(
        services.redis, services.settings.agora_app_id, services.settings.agora_rate_limit
    )
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in collector.collect():
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return samples


def _one(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, default: float = 0) -> float:
    found = samples.get(name)
    return found[0][1] if found else default


def state_counts(services: Services) -> list[tuple[str, int, bool]]:
    """(state, count, terminal) for every state: non-terminal ones now; terminal ones as ever entered."""
    samples = _metrics(services)
    active = {labels["state"]: int(v) for labels, v in samples.get("acr_recordings_by_state", [])}
    entered = {labels["state"]: int(v) for labels, v in samples.get("acr_recordings_entered_total", [])}
    return [
        (
            state,
            entered.get(state, 0) if state in TERMINAL_STATES else active.get(state, 0),
            state in TERMINAL_STATES,
        )
        for state in STATES
    ]


def upload_status(recording: Recording) -> str:
    """A short summary of the file manifest."""
    statuses = [f.status for f in recording.files.values()]
    if not statuses:
        return "no files yet" if not recording.terminal else "no files"
    uploaded = statuses.count("uploaded")
    backed = statuses.count("backed_up")
    parts = [f"{uploaded}/{len(statuses)} uploaded"]
    if backed:
        parts.append(f"{backed} backed up")
    if recording.files_in_doubt:
        parts.append(f"{len(recording.files_in_doubt)} in doubt")
    return ", ".join(parts)


def row(recording: Recording, now: int) -> dict[str, Any]:
    started = next((s.started_ms for s in recording.sessions if s.started_ms), None)
    end = recording.ended_ms or (None if recording.terminal else now)
    return {
        "id": recording.id,
        "cname": recording.cname,
        "mode": recording.mode,
        "state": recording.state.value,
        "started": iso(started or recording.created_ms),
        "duration": duration(end - started) if started and end else "",
        "restarts": recording.restarts,
        "files": len(recording.files),
        "upload": upload_status(recording),
    }


def recordings_page(services: Services, args: Mapping[str, str]) -> dict[str, Any] | None:
    """The listing page, or None for a bad filter."""
    state = args.get("state") or None
    cname = args.get("cname") or None
    raw_cursor = args.get("cursor") or None
    if state is not None and state not in STATES:
        return None
    if cname is not None and len(cname) > MAX_CNAME_CHARS:
        return None
    if raw_cursor is not None and not _CURSOR.fullmatch(raw_cursor):
        return None
    cursor = int(raw_cursor) if raw_cursor is not None else None
    if cursor is not None and cursor > 2**63 - 1:
        return None
    found, next_cursor = list_recordings(
        services.redis, state=state, cname=cname, limit=PAGE_SIZE, cursor=cursor
    )
    now = now_ms()
    return {
        "counts": state_counts(services),
        "rows": [row(r, now) for r in found],
        "state": state or "",
        "cname": cname or "",
        "states": STATES,
        "next_cursor": None if next_cursor is None else str(next_cursor),
        "paged": cursor is not None,
    }


def _summary(entry: Mapping[str, Any]) -> str:
    """One line about a timeline entry."""
    kind = entry.get("kind")
    if kind == "callback":
        return f"{entry.get('msgName') or 'event'} (eventType {entry.get('eventType')}, sid {entry.get('sid') or ''})"
    if kind == "agora":
        answer = entry.get("outcome") or ""
        for name in ("status", "code", "reason", "error"):
            if entry.get(name) is not None:
                answer += f" {name}={entry[name]}"
        return f"{entry.get('endpoint')}: {answer.strip()}"
    if kind == "transition":
        return f"{entry.get('from')} → {entry.get('to')} ({entry.get('cause')})"
    if kind == "notification":
        return f"{entry.get('type')} ({entry.get('webhookId')})"
    return str(entry.get("what") or "")


_SHOWN_OUT = {"ts", "kind"}


def events_of(services: Services, recording: Recording) -> list[dict[str, Any]]:
    """The recording's timeline and its sessions' callbacks, in time order, redacted (as the events API)."""
    entries: list[dict[str, Any]] = list(timeline(services.redis, recording.id))
    for agora_session in recording.sessions:
        if agora_session.sid is None:
            continue
        view = read_session(services.redis, agora_session.sid)
        for event in view.events if view is not None else ():
            entries.append({"ts": event.get("receivedMs"), "kind": "callback", **event})
    entries.sort(key=lambda e: e.get("ts") or 0)
    shown = []
    for entry in redact(entries):
        details = {k: v for k, v in entry.items() if k not in _SHOWN_OUT}
        text = msgspec.json.encode(details).decode()
        shown.append(
            {
                "ts": entry.get("ts"),
                "at": iso(entry.get("ts")),
                "kind": str(entry.get("kind") or ""),
                "summary": _summary(entry),
                "details": text if len(text) <= 2000 else text[:2000] + "…",
                "raw": entry,
            }
        )
    return shown


def recording_page(services: Services, recording_id: str) -> dict[str, Any] | None:
    if not RECORDING_ID.fullmatch(recording_id):
        return None
    recording = load(services.redis, recording_id)
    if recording is None:
        return None
    public = recording.public()  # redacted
    events = events_of(services, recording)
    now = now_ms()
    sessions = [
        {
            **s,
            "acquired": iso(s["acquiredMs"]),
            "started": iso(s["startedMs"]),
            "confirmed": iso(s["confirmedMs"]),
            "ended": iso(s["endedMs"]),
        }
        for s in public["sessions"]
    ]
    return {
        "rec": public,
        "terminal": recording.terminal,
        "stop_asked": bool(services.redis.exists(schema.recording_stop_asked(recording.id))),
        "row": row(recording, now),
        "sessions": sessions,
        "files": [{**f, "sliceStart": iso(f.get("sliceStartTime"))} for f in public["files"]],
        "events": events,
        "svg": draw(public["sessions"], events, recording.created_ms, recording.ended_ms or now),
        "last_error": msgspec.json.encode(public["lastError"]).decode() if public["lastError"] else "",
        "notifications": [_delivery_row(d) for d in deliveries_of(services.redis, recording.id)],
        "created": iso(recording.created_ms),
        "ended": iso(recording.ended_ms),
    }


def stop(services: Services, recording_id: str) -> bool:
    """Ask a recording to stop (as ``POST /v1/recordings/{id}/stop``); False when there is no such recording."""
    if not RECORDING_ID.fullmatch(recording_id):
        return False
    recording = load(services.redis, recording_id)
    if recording is None:
        return False
    if not recording.terminal:
        send_command(services.redis, recording.id, {"op": "stop"})
    return True


def dead_letters_page(services: Services, args: Mapping[str, str]) -> dict[str, Any] | None:
    kind = args.get("kind") or None
    cursor = args.get("cursor") or None
    if kind is not None and kind not in deadletters.KINDS:
        return None
    if cursor is not None and not deadletters.ENTRY_ID.fullmatch(cursor):
        return None
    found, next_cursor = deadletters.list_entries(services.redis, kind=kind, limit=PAGE_SIZE, cursor=cursor)
    entries = []
    for entry in found:
        view = entry.view()  # redacted
        body = view.get("body")
        entries.append(
            {
                **view,
                "at": iso(view["atMs"]),
                "retried_at": iso(view["retried"]["atMs"]) if view["retried"] else "",
                "retried_times": view["retried"]["times"] if view["retried"] else 0,
                "body_text": "" if body is None else msgspec.json.encode(body).decode()[:1000],
                "recording_ok": bool(view.get("recordingId") and RECORDING_ID.fullmatch(view["recordingId"])),
            }
        )
    return {
        "entries": entries,
        "kind": kind or "",
        "kinds": deadletters.KINDS,
        "next_cursor": next_cursor,
    }


def retry(services: Services, entry_id: str) -> str | None:
    """Retry a dead letter (as ``POST /v1/dead-letters/{id}/retry``): a message, or None when unknown."""
    if not deadletters.ENTRY_ID.fullmatch(entry_id):
        return None
    try:
        retried = retry_dead_letter(services, entry_id)
    except deadletters.NotRetryableError as exc:
        return f"not retried: {exc}"
    if retried is None:
        return None
    return f"dead letter {entry_id} queued again"


def _delivery_row(view: Mapping[str, Any]) -> dict[str, Any]:
    attempts = redact(view.get("attempts") or [])
    last = attempts[-1] if attempts else None
    if view.get("delivered"):
        status = "delivered"
    elif view.get("exhausted"):
        status = "exhausted"
    elif view.get("pending"):
        status = "pending"
    else:
        status = "failed"
    return {
        **view,
        "created": iso(view.get("createdMs")),
        "delivered_at": iso(view.get("deliveredMs")),
        "attempt_count": len(attempts),
        "last_attempt": "" if last is None else msgspec.json.encode(last).decode()[:300],
        "status": status,
    }


def notifications_page(services: Services, args: Mapping[str, str]) -> dict[str, Any] | None:
    """Deliveries of one recording (``?recording=``), or of the newest recordings; None for a bad id."""
    recording_id = args.get("recording") or None
    if recording_id is not None:
        if not RECORDING_ID.fullmatch(recording_id) or load(services.redis, recording_id) is None:
            return None
        ids = [recording_id]
    else:
        newest, _ = list_recordings(
            services.redis, state=None, cname=None, limit=NOTIFICATION_RECORDINGS, cursor=None
        )
        ids = [r.id for r in newest]
    deliveries = [d for rid in ids for d in deliveries_of(services.redis, rid)]
    deliveries.sort(key=lambda d: d.get("createdMs") or 0, reverse=True)
    return {
        "deliveries": [_delivery_row(d) for d in deliveries],
        "recording": recording_id or "",
        "configured": bool(services.settings.notify_url),
        "scope": NOTIFICATION_RECORDINGS,
    }


def redeliver(services: Services, webhook_id: str) -> str | None:
    """Send a notification again (as ``POST /v1/notifications/{id}/redeliver``); None when unknown."""
    if not WEBHOOK_ID.fullmatch(webhook_id) or load_delivery(services.redis, webhook_id) is None:
        return None
    try:
        record = redeliver_notification(services, webhook_id)
    except deadletters.NotRetryableError as exc:
        return f"not redelivered: {exc}"
    if record is None:
        return None
    return f"notification {webhook_id} queued for redelivery"


def system_page(services: Services) -> dict[str, Any]:
    samples = _metrics(services)
    up = _one(samples, "acr_redis_up") == 1
    queued = {labels["queue"]: int(v) for labels, v in samples.get("acr_queue_jobs", [])}
    failed = {labels["queue"]: int(v) for labels, v in samples.get("acr_jobs_failed", [])}
    ages = [v for _, v in samples.get("acr_inbox_oldest_age_seconds", [])]
    workers: list[dict[str, Any]] = []
    if up:
        try:
            for worker in Worker.all(connection=services.redis):
                workers.append(
                    {
                        "name": worker.name,
                        "state": str(worker.get_state()),
                        "queues": ", ".join(worker.queue_names()),
                        "heartbeat": iso(worker.last_heartbeat.timestamp() * 1000)
                        if worker.last_heartbeat
                        else "",
                    }
                )
        except redis.RedisError:
            up = False
    used = _one(samples, "acr_ratelimit_requests", -1)
    limit = _one(samples, "acr_ratelimit_limit", -1)
    return {
        "up": up,
        "queues": [(name, queued.get(name, 0), failed.get(name, 0)) for name in QUEUES],
        "oldest_backlog": max(ages) if ages else 0.0,
        "workers": workers,
        "rate": None if used < 0 else (int(used), int(limit)),
        "figures": [
            ("recordings stored", int(_one(samples, "acr_recordings"))),
            ("recordings active", int(_one(samples, "acr_recordings_active"))),
            ("callbacks waiting in the inbox", int(_one(samples, "acr_inbox_entries"))),
            ("wake-ups pending", int(_one(samples, "acr_timers"))),
            ("wake-ups overdue", int(_one(samples, "acr_timers_overdue"))),
            ("notifications pending", int(_one(samples, "acr_notifications_pending"))),
            ("dead letters", int(_one(samples, "acr_dead_letter_entries"))),
        ],
    }
