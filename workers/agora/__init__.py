"""Agora Cloud Recording REST client: typed bodies, lenient answers, one outcome table, host failover.

Typical use::

    client = AgoraClient.from_settings(settings)
    resource = client.acquire(AcquireRequest(cname="class-7", uid="527841"), mode="mix")
    started = client.start(resource.resource_id, "mix", StartRequest(cname=..., uid=..., client_request=...))
    report = client.query(started.resource_id, started.sid, "mix")

The client and its transport (``requests``) load on first use of ``AgoraClient``, ``HostPlan`` or
``Timeout``: the web process validates request bodies with this package but never calls Agora.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workers.agora.bodies import (
    AcquireClientRequest,
    AcquireRequest,
    ExtensionService,
    ExtensionServiceConfig,
    LayoutConfig,
    Mode,
    RecordingConfig,
    RecordingFileConfig,
    RtmpOutput,
    ServiceParam,
    SnapshotConfig,
    StartClientRequest,
    StartRequest,
    StopClientRequest,
    StopRequest,
    StorageConfig,
    StreamSubscribe,
    TranscodingConfig,
    UidLists,
    UpdateClientRequest,
    UpdateLayoutClientRequest,
    UpdateLayoutRequest,
    UpdateRequest,
    WebRecordingConfig,
    explain_validation_error,
    from_json_dict,
)
from workers.agora.errors import AgoraApiError, AgoraError, AgoraRequestError, AgoraTransportError
from workers.agora.outcomes import Outcome, classify
from workers.agora.ratelimit import MARGIN_MS
from workers.agora.responses import Answer, RecordedFile, RecordingReport

if TYPE_CHECKING:
    from workers.agora.client import AgoraClient
    from workers.agora.transport import HostPlan, Timeout


def __getattr__(name: str) -> Any:
    if name == "AgoraClient":
        from workers.agora.client import AgoraClient

        return AgoraClient
    if name in ("HostPlan", "Timeout"):
        from workers.agora import transport

        return getattr(transport, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AcquireClientRequest",
    "AcquireRequest",
    "AgoraApiError",
    "AgoraClient",
    "AgoraError",
    "AgoraRequestError",
    "AgoraTransportError",
    "Answer",
    "ExtensionService",
    "ExtensionServiceConfig",
    "HostPlan",
    "MARGIN_MS",
    "LayoutConfig",
    "Mode",
    "Outcome",
    "RecordedFile",
    "RecordingConfig",
    "RecordingFileConfig",
    "RecordingReport",
    "RtmpOutput",
    "ServiceParam",
    "SnapshotConfig",
    "StartClientRequest",
    "StartRequest",
    "StopClientRequest",
    "StopRequest",
    "StorageConfig",
    "StreamSubscribe",
    "Timeout",
    "TranscodingConfig",
    "UidLists",
    "UpdateClientRequest",
    "UpdateLayoutClientRequest",
    "UpdateLayoutRequest",
    "UpdateRequest",
    "WebRecordingConfig",
    "classify",
    "explain_validation_error",
    "from_json_dict",
]
