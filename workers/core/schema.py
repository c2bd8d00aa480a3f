"""The Redis schema: every key this service writes, every RQ queue it uses and the dotted path of every job
function it queues, in one place (RQ's own keys come from RQ's classes, named after these queues).

A test (``tests/integration/test_schema.py``) lists every key the test suite left in Redis and checks each
against :data:`PATTERNS`."""

from __future__ import annotations

import inspect
import re
import zlib
from collections.abc import Iterable

PREFIX = "acr"

#: Events are spread over this many inbox partitions by channel name; one drain runs per partition at a time.
#: Changing it re-routes channels, so it is a constant, not a setting.
PARTITIONS = 64

#: The RQ queue that carries inbox drain jobs (listened to before the default queue).
NCS_QUEUE = "ncs"
#: Orchestration steps.
DEFAULT_QUEUE = "default"
#: Outbound notifications to the app server (listened to last).
NOTIFY_QUEUE = "notify"
#: Every queue a worker listens to, in priority order.
QUEUES = (NCS_QUEUE, DEFAULT_QUEUE, NOTIFY_QUEUE)

#: The dotted paths of the job functions, stored in Redis with every queued job: all in :mod:`workers.jobs`.
JOB_DRAIN = "workers.jobs.drain_partition"
JOB_STEP = "workers.jobs.advance_recording"
JOB_NOTIFY = "workers.jobs.send_notification"
#: What this release queues notification attempts as: the previous release's path, which the workers of
#: both releases run (a rolling deploy has both at once, and the previous ``workers.jobs`` has no
#: ``send_notification``: a new job taken by an old worker would fail and never be delivered). The function
#: behind it is :func:`workers.jobs.send_notification`; the next release queues :data:`JOB_NOTIFY`.
JOB_NOTIFY_QUEUED = "workers.notify.send_notification"
#: Paths the previous release queued under; thin aliases keep them running for one release.
OLD_JOB_PATHS = {
    "workers.orchestrator.advance": JOB_STEP,
    "workers.notify.send_notification": JOB_NOTIFY,
}

STATS = f"{PREFIX}:stats"
DEAD_LETTERS = f"{PREFIX}:dead"
#: Hash: dead-letter entry id -> when and how it was retried (stream entries cannot change).
DEAD_LETTERS_RETRIED = f"{PREFIX}:dead:retried"
#: Hashes of counters for /metrics: accepted-to-applied histogram, Agora request histogram.
APPLY_HISTOGRAM = f"{PREFIX}:hist:apply"
AGORA_HISTOGRAM = f"{PREFIX}:hist:agora"
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


def rate_limit(app_id: str) -> str:
    """Send times of recent Agora requests for one App ID (sorted set)."""
    return f"{PREFIX}:ratelimit:{app_id}"


def rate_limit_sequence(app_id: str) -> str:
    """Makes the members of :func:`rate_limit` unique."""
    return f"{PREFIX}:ratelimit:{app_id}:seq"


def rate_limit_waiting(app_id: str, tier: str) -> str:
    """Who waits for a slot in a tier (stop, start, acquire), until when (sorted set): lower tiers then leave
    it room."""
    return f"{PREFIX}:ratelimit:{app_id}:waiting:{tier}"


RECORDINGS_INDEX = f"{PREFIX}:recordings"  # sorted set: id by creation time (ms)
ACTIVE_RECORDINGS = f"{PREFIX}:recordings:active"  # sorted set: non-terminal ids by last update (ms)
RECORDING_STATES = f"{PREFIX}:recordings:state"  # hash: id -> "state since-ms" of non-terminal recordings


def notification(message_id: str) -> str:
    """A notification's delivery record (JSON: type, recording, each attempt)."""
    return f"{PREFIX}:notification:{message_id}"


def recording_notifications(recording_id: str) -> str:
    """A recording's notifications (sorted set: webhook-id by creation time, ms)."""
    return f"{PREFIX}:rec:{recording_id}:notifications"


def recording(recording_id: str) -> str:
    """A recording's document (JSON)."""
    return f"{PREFIX}:rec:{recording_id}"


def recording_timeline(recording_id: str) -> str:
    """A recording's timeline of API calls and transitions (list of JSON entries, oldest first)."""
    return f"{PREFIX}:rec:{recording_id}:timeline"


def recording_lock(recording_id: str) -> str:
    """Held while a worker acts on a recording (one Agora conversation at a time)."""
    return f"{PREFIX}:rec:{recording_id}:lock"


def recording_of_sid(sid: str) -> str:
    """Which recording a session (sid) belongs to."""
    return f"{PREFIX}:sid:{sid}:recording"


def idempotency(key: str) -> str:
    """The recording created for an ``Idempotency-Key``."""
    return f"{PREFIX}:idem:{key}"


def recording_commands(recording_id: str) -> str:
    """Commands from the API for a recording, oldest first (list of JSON objects)."""
    return f"{PREFIX}:rec:{recording_id}:commands"


def recording_queued(recording_id: str) -> str:
    """Set while a step of the recording is queued and not yet started (wake-ups never stack)."""
    return f"{PREFIX}:rec:{recording_id}:queued"


def recording_found(recording_id: str) -> str:
    """Sids seen in callbacks on the recording's channel with one of its uids (set)."""
    return f"{PREFIX}:rec:{recording_id}:found"


def channel_claim(cname: str, uid: str) -> str:
    """The recordings that used a recorder uid on a channel (a set: a callback of an unknown sid reaches
    each of them, and each decides whether the task can be one of its own)."""
    return f"{PREFIX}:claim:{cname}:{uid}"


#: Sorted set: recording id -> when its one pending wake-up is due (ms). Every worker serves it.
TIMERS = f"{PREFIX}:timers"


def worker_alive(holder: str) -> str:
    """Present while a worker process lives (refreshed every second; see workers/recordings/liveness.py)."""
    return f"{PREFIX}:alive:{holder}"


def recording_stop_asked(recording_id: str) -> str:
    """Set when the API queued a stop for the recording (a stop is queued once)."""
    return f"{PREFIX}:rec:{recording_id}:stop_asked"


def recording_poked(recording_id: str) -> str:
    """Set when a wake-up found the recording's lock held: the running step's save then looks again soon."""
    return f"{PREFIX}:rec:{recording_id}:poked"


def recording_outbox(recording_id: str) -> str:
    """Notifications a save decided and that are not queued yet (JSON entries; see the runner)."""
    return f"{PREFIX}:rec:{recording_id}:outbox"


#: Counter giving every new recording its place in its capacity class's queue (creation order).
ADMISSION_SEQUENCE = f"{PREFIX}:admission:seq"


def admission_queue(klass: str) -> str:
    """Recordings of a capacity class waiting for a slot (sorted set: priority, then creation order)."""
    return f"{PREFIX}:admission:{klass}:queue"


def admission_holders(klass: str) -> str:
    """Recordings of a capacity class holding a slot of the App ID's concurrency quota (set)."""
    return f"{PREFIX}:admission:{klass}:holders"


def admission_agora_full(klass: str) -> str:
    """Recordings of a capacity class holding a slot that wait because Agora answered 406 (set): while any
    does, nobody new leaves the queue."""
    return f"{PREFIX}:admission:{klass}:agora_full"


# -- checking names against the schema ------------------------------------------------------------------

#: Arguments that may hold any character, ':' included (Agora's channel names and sids, client-chosen keys,
#: holder ids ``host:pid:token``); every other argument is one segment of the name.
_FREE_FORM = frozenset({"sid", "cname", "notice_id", "key", "holder"})
#: The functions of this module that name no key.
NOT_KEY_BUILDERS = frozenset({"partition_of", "unknown_keys"})
#: RQ's own keys (queues, jobs, registries, workers) live under RQ's prefix, named after :data:`QUEUES`.
RQ_PREFIX = "rq:"


def _patterns() -> list[re.Pattern[str]]:
    """One pattern per key of the schema: the constants above, and each builder with every argument a
    wildcard."""
    patterns = []
    for name, value in globals().items():
        if isinstance(value, str) and value.startswith(PREFIX + ":"):
            patterns.append(re.compile(re.escape(value)))
        elif inspect.isfunction(value) and value.__module__ == __name__ and not name.startswith("_"):
            if name in NOT_KEY_BUILDERS:
                continue
            parameters = list(inspect.signature(value).parameters)
            marks = [f"\0{i}\0" for i in range(len(parameters))]
            pattern = re.escape(value(*marks))
            for mark, parameter in zip(marks, parameters, strict=True):
                wildcard = ".+" if parameter in _FREE_FORM else "[^:]+"
                pattern = pattern.replace(re.escape(mark), wildcard)
            patterns.append(re.compile(pattern))
    return patterns


def unknown_keys(names: Iterable[str | bytes]) -> list[str]:
    """The names that no key of this schema (nor RQ) can have: keys written outside the schema."""
    patterns = PATTERNS
    found = []
    for raw in names:
        name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if name.startswith(RQ_PREFIX) or any(p.fullmatch(name) for p in patterns):
            continue
        found.append(name)
    return sorted(found)


PATTERNS = _patterns()
