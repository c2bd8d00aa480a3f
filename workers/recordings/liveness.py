"""Which worker processes are alive, so that a lock held by a killed one is taken over in seconds.

A recording's lock outlasts the worst Agora call (minutes), as it must: a live step is never overtaken. But
a worker SIGKILLed in the middle of a step leaves its lock behind, and waiting out its TTL would stall the
recording's timers for minutes. So each worker process keeps a short-lived key
(``acr:alive:<holder>``, :data:`ALIVE_TTL_MS`), refreshed every second by a daemon thread, and writes its
holder id into every lock it takes (``<token>|<holder>``). A step that finds a lock whose holder's key has
expired takes the lock over (compare-and-set on the whole value). Even if a holder were only paused, not
dead, it could not write afterwards: every save compares the lock's value (fencing).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading

import redis

from workers.core import schema, scripts

ALIVE_TTL_MS = 3000
#: No lock is taken over until Redis has been up this long (heartbeats lost with a restart beat again).
RESTART_GRACE_MS = 2 * ALIVE_TTL_MS
HEARTBEAT_SECONDS = 1.0


_holder: tuple[int, str] | None = None
_lock = threading.Lock()


def holder_id() -> str:
    """This process's id (a new one after fork)."""
    global _holder
    pid = os.getpid()
    if _holder is None or _holder[0] != pid:
        with _lock:
            if _holder is None or _holder[0] != pid:
                _holder = (pid, f"{socket.gethostname()}:{pid}:{secrets.token_hex(3)}")
    return _holder[1]


_beating: dict[int, threading.Thread] = {}


def keep_alive(connection: redis.Redis) -> str:
    """Start this process's heartbeat (once per process); returns its holder id."""
    holder = holder_id()
    pid = os.getpid()
    with _lock:
        if pid in _beating and _beating[pid].is_alive():
            return holder
        key = schema.worker_alive(holder)
        pool_kwargs = connection.connection_pool.connection_kwargs
        # The same connection class as the caller's (a rediss:// URL gives SSL connections, whose arguments a
        # plain connection refuses).
        pool = redis.ConnectionPool(
            connection_class=connection.connection_pool.connection_class, **pool_kwargs
        )
        beat_connection = redis.Redis(connection_pool=pool)

        def beat() -> None:
            stop = threading.Event()
            while not stop.wait(HEARTBEAT_SECONDS):
                try:
                    beat_connection.set(key, 1, px=ALIVE_TTL_MS)
                except redis.RedisError:
                    pass  # Redis away: nobody can take locks over meanwhile either

        connection.set(key, 1, px=ALIVE_TTL_MS)
        thread = threading.Thread(target=beat, name="acr-alive", daemon=True)
        thread.start()
        _beating[pid] = thread
    return holder


def holder_of(value: bytes | str) -> str:
    """The holder id written in a lock value."""
    text = value.decode() if isinstance(value, bytes) else value
    return text.partition("|")[2]


def take_over_if_dead(connection: redis.Redis, lock: str, value: str, ttl_ms: int) -> bool:
    """Take ``lock`` over (new value ``value``) if its holder's heartbeat has expired."""
    held = connection.get(lock)
    if held is None:
        return bool(connection.set(lock, value, nx=True, px=ttl_ms))
    holder = holder_of(held)
    if holder and connection.exists(schema.worker_alive(holder)):
        return False
    # Just after a Redis restart every heartbeat key may have expired while its worker lives on: wait until
    # the live ones had time to beat again.
    uptime = int(connection.info("server").get("uptime_in_seconds", 0))
    if uptime * 1000 < RESTART_GRACE_MS:
        return False
    return bool(scripts.TAKE_OVER_LOCK(connection, keys=[lock], args=[held, value, ttl_ms]))
