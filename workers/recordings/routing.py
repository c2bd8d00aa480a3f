"""Callbacks wake the recordings they concern.

A callback's sid normally belongs to a session a recording started (``acr:sid:<sid>:recording``). A sid
nobody knows, on a channel and recorder uid a recording claimed (``acr:claim:<cname>:<uid>``, written when
it acquired that uid), is a task that recording may have created without learning its sid (an ambiguous
start): the sid is added to the recording's ``found`` set, and its next step adopts the task or stops it.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from workers.core import schema
from workers.ncs.drain import Seen
from workers.recordings.timers import wake

FOUND_TTL_SECONDS = 30 * 24 * 3600


def wake_recordings(connection: redis.Redis, seen: Iterable[Seen]) -> int:
    """Wake the recordings owning these sessions, or claiming their channel and uid; returns how many."""
    seen = list(seen)
    if not seen:
        return 0
    owners = connection.mget([schema.recording_of_sid(s.sid) for s in seen])
    woken: set[str] = set()
    for item, owner in zip(seen, owners, strict=True):
        if isinstance(owner, bytes):
            woken.add(owner.decode())
            continue
        if item.cname is None or not item.uids:
            continue
        pipe = connection.pipeline(transaction=False)
        for uid in sorted(item.uids):
            pipe.smembers(schema.channel_claim(item.cname, uid))
        claimants = sorted({m.decode() for members in pipe.execute() for m in members})
        for claimant in claimants:
            connection.sadd(schema.recording_found(claimant), item.sid)
            connection.expire(schema.recording_found(claimant), FOUND_TTL_SECONDS)
            woken.add(claimant)
    for recording_id in sorted(woken):
        wake(connection, recording_id)
    return len(woken)
