"""Switchable faults: what the emulator does wrong on purpose, globally, per channel or per session.

A fault is a JSON object ``{"kind": ..., "cname"?: ..., "sid"?: ..., "times"?: n, ...parameters}``; on the
command line the same thing is written ``kind:key=value,key=value``. Kinds:

=================  ===========================================================================================
``answer``         the next ``times`` calls to ``endpoint`` get ``status`` / ``code`` / ``reason`` instead of
                   being served (5xx, 206/65, 504/62, 429, ...); ``endpoint`` ``*`` matches every call
``slow``           Agora answers slowly: the next ``times`` calls to ``endpoint`` (or ``*``) are served as usual
                   (``start`` starts the task, ``stop`` stops it) but the answer is held back ``delay`` *real*
                   seconds (default 15), so the caller's read timeout fires first; the request log marks them
                   ``slowSeconds``. Calls refused before reaching the service (401, 404 route, 429, 400 code 8)
                   are answered at once and do not use the fault
``ncs``            callback delivery: ``loss`` and ``duplicate`` probabilities, ``reorder`` (seconds of random
                   extra delay per callback), ``delay`` (fixed extra seconds)
``die``            start is accepted, then the task silently dies ``after`` seconds (query answers 404)
``failover``       HA failover ``after`` seconds: event 12 with a new uid, 404s for ``window`` seconds, then
                   ``bak<n>_`` files; ``count`` failovers in a row (a 4th stops the task, as on Agora)
``backup``         the upload ends in Agora's backup: event 32 and ``uploadingStatus: backuped``
``abnormal_exit``  fatal error event 1 then session exit 11 with ``exitStatus`` 1, ``after`` seconds
``capability_limit``  web mode: event 72 (``limitType``) then 71 with code 2, ``after`` seconds
=================  ===========================================================================================

Session faults (``die`` .. ``capability_limit``) are taken by the next ``times`` sessions started on a
matching channel (every one when ``times`` is absent). ``answer`` and ``slow`` faults given for one task
(``/_emulator/tasks/<sid>/faults``) apply to that session's calls only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SESSION_KINDS = ("die", "failover", "backup", "abnormal_exit", "capability_limit")
KINDS = ("answer", "slow", "ncs", *SESSION_KINDS)
ENDPOINTS = ("acquire", "start", "query", "update", "updateLayout", "stop", "*")
SESSION_ENDPOINTS = ("query", "update", "updateLayout", "stop", "*")
#: Real seconds a ``slow`` answer is held back when the fault gives no ``delay``.
SLOW_DELAY = 15.0


class FaultError(ValueError):
    """A fault specification that cannot be used; the message says which part."""


@dataclass
class Fault:
    """One switched-on fault."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    cname: str | None = None
    sid: str | None = None
    times: int | None = None
    used: int = 0
    id: int = 0

    def matches(self, cname: str | None, sid: str | None = None) -> bool:
        """Applies to this channel / session and has uses left."""
        if self.times is not None and self.used >= self.times:
            return False
        if self.cname is not None and self.cname != cname:
            return False
        return self.sid is None or self.sid == sid

    def take(self) -> None:
        """Count one use."""
        self.used += 1

    def number(self, name: str, default: float) -> float:
        """A numeric parameter."""
        value = self.params.get(name, default)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise FaultError(f"{self.kind}.{name} must be a number") from None

    def to_json(self) -> dict[str, Any]:
        """As given, plus its id and use count."""
        return {
            "id": self.id,
            "kind": self.kind,
            "cname": self.cname,
            "sid": self.sid,
            "times": self.times,
            "used": self.used,
            **self.params,
        }


def parse_fault(spec: dict[str, Any]) -> Fault:
    """A Fault from its JSON form; raises FaultError for unknown kinds and bad values."""
    if not isinstance(spec, dict):
        raise FaultError("a fault is a JSON object")
    params = dict(spec)
    kind = params.pop("kind", None)
    if kind not in KINDS:
        raise FaultError(f"kind must be one of {', '.join(KINDS)}")
    cname = params.pop("cname", None)
    sid = params.pop("sid", None)
    times = params.pop("times", None)
    if times is not None:
        try:
            times = int(times)
        except (TypeError, ValueError):
            raise FaultError("times must be an integer") from None
    fault = Fault(kind=kind, params=params, cname=cname, sid=sid, times=times)
    if kind in ("answer", "slow") and params.get("endpoint", "*") not in ENDPOINTS:
        raise FaultError(f"{kind}.endpoint must be one of {', '.join(ENDPOINTS)}")
    if kind == "slow" and fault.number("delay", SLOW_DELAY) < 0:
        raise FaultError("slow.delay must not be negative")
    if kind == "answer":
        status = int(fault.number("status", 500))
        if not 200 <= status <= 599:
            raise FaultError("answer.status must be an HTTP status")
    for name in ("after", "window", "count", "loss", "duplicate", "reorder", "delay", "status", "code"):
        if name in params:
            fault.number(name, 0)
    return fault


def parse_cli_fault(text: str) -> Fault:
    """``kind:key=value,...`` from the command line."""
    kind, _, rest = text.partition(":")
    spec: dict[str, Any] = {"kind": kind.strip()}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise FaultError(f"fault parameter {item!r} is not key=value")
        spec[key.strip()] = _scalar(value.strip())
    return parse_fault(spec)


def _scalar(value: str) -> Any:
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value
