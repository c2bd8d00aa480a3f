"""Recordings and their orchestration: what the app server asked for, and the steps that make Agora do it.

=============  ===============================================================================================
``machine``    states, desired states, session outcomes and the one table of legal transitions
``model``      the stored recording, its sessions and its file manifest
``decide``     the decisions, pure: (recording, callbacks, time) -> the next Agora call, and what an answer means
``runner``     one step: lock, load, decide, call Agora through the rate limit, save (fenced), repeat
``store``      creating recordings (idempotently), API commands and reads
``timers``     one pending wake-up per recording, served by every worker
``routing``    callbacks wake the recordings they belong to, and find the owners of tasks nobody announced
``admission``  the App ID's concurrency quota: who holds a slot, who waits in which order
``liveness``   worker heartbeats, and taking over the lock of a step whose worker died
``notify``     signed notifications to the app server, retried, dead-lettered when they run out
=============  ===============================================================================================

This package's face, for the web process: what it imports from here, it imports from this module (the
orchestration itself, ``runner``, ``decide`` and ``routing``, runs in workers only).
"""

from workers.recordings.admission import position as queue_position
from workers.recordings.admission import usage as admission_usage
from workers.recordings.machine import TERMINAL, Desired, SessionOutcome, State
from workers.recordings.model import RECORDING_ID, Recording
from workers.recordings.notify import WEBHOOK_ID, deliveries_of, delivery_view, load_delivery, redeliver
from workers.recordings.polling import poll_interval
from workers.recordings.store import (
    MAX_CNAME_CHARS,
    MAX_DURATION_SECONDS,
    MAX_JSON_DEPTH,
    MAX_JSON_INTEGER,
    MAX_JSON_ITEMS,
    MAX_JSON_STRING,
    MAX_LIST,
    MAX_LIST_SCAN,
    MAX_RESTARTS_LIMIT,
    MAX_TOKEN_CHARS,
    IdempotencyConflictError,
    RecordingSpec,
    TooManyCommandsError,
    check_change,
    check_json_bounds,
    create_recording,
    list_recordings,
    load,
    send_command,
    timeline,
)

__all__ = [
    "MAX_CNAME_CHARS",
    "MAX_DURATION_SECONDS",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INTEGER",
    "MAX_JSON_ITEMS",
    "MAX_JSON_STRING",
    "MAX_LIST",
    "MAX_LIST_SCAN",
    "MAX_RESTARTS_LIMIT",
    "MAX_TOKEN_CHARS",
    "RECORDING_ID",
    "TERMINAL",
    "WEBHOOK_ID",
    "Desired",
    "IdempotencyConflictError",
    "Recording",
    "RecordingSpec",
    "SessionOutcome",
    "State",
    "TooManyCommandsError",
    "admission_usage",
    "check_change",
    "check_json_bounds",
    "create_recording",
    "deliveries_of",
    "delivery_view",
    "list_recordings",
    "load",
    "load_delivery",
    "poll_interval",
    "queue_position",
    "redeliver",
    "send_command",
    "timeline",
]
