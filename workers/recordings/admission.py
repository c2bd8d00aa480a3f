"""Admission: the App ID's concurrency quota, shared by every worker, and the queue of recordings waiting for it.

Agora runs at most 50 cloud recorders (individual and mix) and 200 web recorders per App ID at once
(``docs/agora.md`` §2); beyond, acquire answers 400/406 ``vendor_over_load``. So that the 51st recording waits
its turn instead of failing or churning, every recording takes a slot of its class before its first acquire
(``AGORA_MAX_RECORDERS``, ``AGORA_MAX_WEB_RECORDERS``; 0 = no limit):

* at creation it enters its class's queue (:func:`queue_score`: ``high`` priority first, then creation order,
  by a counter, not a clock);
* each step of a recording that wants to record and holds no slot runs :data:`scripts.ADMIT`: it gets a slot
  when fewer recordings wait ahead of it than slots are free (so the queue drains in order), else it learns
  its position and stays ``queued``;
* a recording holds its slot while it is wanted (recording or paused: a resume never waits) or any of its
  sessions may still run, and gives it back in the same save that ends that (:data:`workers.core.scripts.SAVE_RECORDING` does both
  the save script); the save wakes as many queued recordings as slots are free, from the head of the queue;
* a 406 from Agora all the same (another app on the App ID, tasks Agora still counts) sends the recording
  back to ``queued``, keeping its slot, to ask again after a backoff: waiting for capacity, never a failure.
  While any recording of the class waits so, nobody new leaves the queue (Agora is evidently full), and a
  freed slot wakes those first;
* :func:`reconcile` (every worker, every few seconds) frees the slots and queue places of recordings that are
  no longer active.
"""

from __future__ import annotations

from typing import cast

import redis

from workers.agora.bodies import Mode
from workers.core import schema, scripts
from workers.core.config import Settings
from workers.recordings.machine import Desired
from workers.recordings.model import Priority, Recording

#: Queue scores: the priority's rank times this, plus the creation counter (exact in a double up to 2^53).
RANK_SPAN = 10**13
_RANK: dict[str, int] = {"high": 0, "normal": 1}


def capacity_class(mode: Mode) -> str:
    """The quota a recording counts against: web page recorders have their own."""
    return "web" if mode == "web" else "recorder"


def slots_for(settings: Settings, mode: Mode) -> int:
    """The configured number of slots of a mode's class (0: no limit)."""
    return settings.agora_max_web_recorders if mode == "web" else settings.agora_max_recorders


def queue_score(priority: Priority, sequence: int) -> int:
    """Where a recording waits: every ``high`` one before every ``normal`` one, then in creation order."""
    return _RANK[priority] * RANK_SPAN + sequence


def admit(connection: redis.Redis, rec: Recording, slots: int) -> int:
    """0 when the recording holds a slot of its class (taking one if its turn came), else its place in the
    queue (1 = next). A recording that ran sessions before (or was admitted) is re-admitted unconditionally:
    a lost slot record never sends a running recording back to the queue."""
    klass = capacity_class(rec.mode)
    holds = rec.admitted or bool(rec.sessions)
    return int(
        scripts.ADMIT(
            connection,
            keys=[
                schema.admission_queue(klass),
                schema.admission_holders(klass),
                schema.ADMISSION_SEQUENCE,
                schema.admission_agora_full(klass),
            ],
            args=[rec.id, slots, 1 if holds else 0, queue_score(rec.priority, 0)],
        )
    )


def admission_mark(rec: Recording) -> int:
    """What a save does with the recording's slot: 0 keep (or keep waiting for one), 1 give it back, 2 keep it
    and wait after a 406 (Agora is full: nobody new leaves the queue meanwhile)."""
    if not rec.holds_capacity:
        return 1
    waiting = rec.desired == Desired.RECORDING and rec.capacity_waits and not rec.live_sessions
    return 2 if rec.admitted and waiting else 0


def position(connection: redis.Redis, rec: Recording) -> int | None:
    """A queued recording's 1-based place in its class's queue, for the API (None when not queued)."""
    rank = connection.zrank(schema.admission_queue(capacity_class(rec.mode)), rec.id)
    return None if rank is None else int(cast(int, rank)) + 1


def usage(connection: redis.Redis) -> dict[str, tuple[int, int]]:
    """Per class: (recordings holding a slot, recordings waiting)."""
    pipe = connection.pipeline(transaction=False)
    classes = ("recorder", "web")
    for klass in classes:
        pipe.scard(schema.admission_holders(klass))
        pipe.zcard(schema.admission_queue(klass))
    found = pipe.execute()
    return {klass: (int(found[2 * i]), int(found[2 * i + 1])) for i, klass in enumerate(classes)}


def reconcile(connection: redis.Redis, batch: int = 500) -> int:
    """Free the slots and queue places of recordings that are no longer active (ended, or gone with their
    retention or a crashed Redis's last writes): the save that ends a recording gives its slot back, this
    catches what such a save never did. Reads the active index only; returns how many were dropped."""
    dropped = 0
    for klass in ("recorder", "web"):
        queue_key = schema.admission_queue(klass)
        queued = [m.decode() for m in cast(list[bytes], connection.zrange(queue_key, 0, batch - 1))]
        for key in (schema.admission_holders(klass), schema.admission_agora_full(klass), queue_key):
            if key == queue_key:
                ids = queued
            else:
                ids = [m.decode() for m in cast(list[bytes], connection.srandmember(key, batch) or [])]
            if not ids:
                continue
            scores = connection.zmscore(schema.ACTIVE_RECORDINGS, ids)
            stale = [i for i, score in zip(ids, scores, strict=True) if score is None]
            if stale:
                (connection.zrem if key == queue_key else connection.srem)(key, *stale)
                dropped += len(stale)
    return dropped
