"""Every Redis key this service writes, in one place (RQ's own keys come from RQ's classes)."""

from __future__ import annotations

import zlib

PREFIX = "acr"

#: Events are spread over this many inbox partitions by channel name; one drain runs per partition at a time.
#: Changing it re-routes channels, so it is a constant, not a setting.
PARTITIONS = 64

#: The RQ queue that carries inbox drain jobs (listened to before the default queue).
NCS_QUEUE = "ncs"
DEFAULT_QUEUE = "default"

STATS = f"{PREFIX}:stats"
DRAIN_JOB_SEQUENCE = f"{PREFIX}:inbox:jobseq"
DEAD_LETTERS = f"{PREFIX}:dead"
UNROUTED = f"{PREFIX}:unrouted"
SESSIONS_INDEX = f"{PREFIX}:sessions"


def partition_of(routing_key: str) -> int:
    """The inbox partition of a channel (or session) name."""
    return zlib.crc32(routing_key.encode("utf-8", "surrogatepass")) % PARTITIONS


def seen(notice_id: str) -> str:
    return f"{PREFIX}:seen:{notice_id}"


def inbox(partition: int) -> str:
    return f"{PREFIX}:inbox:{partition}"


def inbox_cursor(partition: int) -> str:
    return f"{PREFIX}:inbox:{partition}:cursor"


def inbox_queued(partition: int) -> str:
    return f"{PREFIX}:inbox:{partition}:queued"


def drain_job_template(partition: int) -> str:
    return f"{PREFIX}:inbox:{partition}:job"


def session(sid: str) -> str:
    return f"{PREFIX}:session:{sid}"


def session_events(sid: str) -> str:
    return f"{PREFIX}:session:{sid}:events"


def session_order(sid: str) -> str:
    return f"{PREFIX}:session:{sid}:order"


def session_semantic(sid: str) -> str:
    return f"{PREFIX}:session:{sid}:semantic"
