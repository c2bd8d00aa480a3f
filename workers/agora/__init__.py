"""Agora Cloud Recording REST client: typed bodies, lenient answers, one outcome table, host failover.

Typical use::

    client = AgoraClient.from_settings(settings)
    resource = client.acquire(AcquireRequest(cname="class-7", uid="527841"), mode="mix")
    started = client.start(resource.resource_id, "mix", StartRequest(cname=..., uid=..., client_request=...))
    report = client.query(started.resource_id, started.sid, "mix")
"""

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
    from_json_dict,
)
from workers.agora.client import AgoraClient
from workers.agora.errors import AgoraApiError, AgoraError, AgoraRequestError, AgoraTransportError
from workers.agora.outcomes import Outcome, classify
from workers.agora.responses import Answer, RecordedFile, RecordingReport
from workers.agora.transport import HostPlan, Timeout

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
    "from_json_dict",
]
