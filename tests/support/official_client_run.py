"""Drive Agora's official Python client (agora-rest-client 0.2.0) against the emulator; run as a subprocess.

Usage: python official_client_run.py BASE_URL APP_ID CUSTOMER_ID CUSTOMER_SECRET ACCESS_KEY SECRET_KEY

Only its URL building is overridden: the host list (normally DNS-selected regional Agora domains) holds the
emulator's base URL, and ``get_api_url`` joins it with the path as the client does for its https hosts. That
client starts a never-ending, non-daemon thread (domain re-selection), so this script ends with ``os._exit``.
Prints one JSON object: per mode, the sid, the query statuses seen and the stop answer.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

from agora_rest_client.core import domain
from agora_rest_client.services.cloud_recording.v1 import (
    api_acquire,
    api_query,
    api_start,
    api_stop,
    api_update,
    api_update_layout,
)
from agora_rest_client.services.cloud_recording.v1.cloud_recording_client import CloudRecordingClient

BASE, APP_ID, CUSTOMER_ID, CUSTOMER_SECRET, ACCESS_KEY, SECRET_KEY = sys.argv[1:7]
CNAME, UID = "official", "527841"


class EmulatorDomain(domain.Domain):
    """The host list is the emulator instead of DNS-selected Agora regional domains."""

    def select_best_domain(self):
        self._domain_list = [BASE]


class EmulatorClient(CloudRecordingClient):
    """URLs are built on the emulator's http base URL."""

    def get_api_url(self, host, url, service_region=None):  # noqa: ARG002 (the client's signature)
        return host + url


def storage():
    return api_start.StorageConfig(
        vendor=1,
        region=0,
        bucket="recordings",
        accessKey=ACCESS_KEY,
        secretKey=SECRET_KEY,
        fileNamePrefix=["tests"],
    )


def start_request(mode):
    if mode == "individual":
        return api_start.ClientRequest(
            storageConfig=storage(),
            recordingConfig=api_start.RecordingConfig(
                channelType=0,
                streamTypes=2,
                maxIdleTime=30,
                subscribeAudioUids=["1001"],
                subscribeVideoUids=["1001"],
                subscribeUidGroup=0,
            ),
            recordingFileConfig=api_start.RecordingFileConfig(avFileType=["hls"]),
        )
    if mode == "mix":
        return api_start.ClientRequest(
            storageConfig=storage(),
            recordingConfig=api_start.RecordingConfig(
                channelType=0,
                audioProfile=1,
                transcodingConfig=api_start.TranscodingConfig(
                    width=640, height=360, fps=15, bitrate=500, mixedVideoLayout=1, backgroundColor="#000000"
                ),
            ),
            recordingFileConfig=api_start.RecordingFileConfig(avFileType=["hls", "mp4"]),
        )
    services = [
        api_start.ExtensionServices(
            serviceName="web_recorder_service",
            errorHandlePolicy="error_abort",
            serviceParam=api_start.ServiceParam(
                url="https://example.com/class",
                audioProfile=0,
                videoWidth=1280,
                videoHeight=720,
                maxRecordingHour=3,
            ),
        ),
        api_start.ExtensionServices(
            serviceName="rtmp_publish_service",
            errorHandlePolicy="error_ignore",
            serviceParam=api_start.ServiceParam(outputs=[{"rtmpUrl": "rtmp://cdn.example.com/live/a"}]),
        ),
    ]
    return api_start.ClientRequest(
        storageConfig=storage(),
        extensionServiceConfig=api_start.ExtensionServiceConfig(
            errorHandlePolicy="error_abort", extensionServices=services
        ),
        recordingFileConfig=api_start.RecordingFileConfig(avFileType=["hls", "mp4"]),
    )


def update_request(mode):
    if mode == "individual":
        lists = api_update.AudioUidList(subscribeAudioUids=["1001", "1002"])
        return api_update.ClientRequest(streamSubscribe=api_update.StreamSubscribe(audioUidList=lists))
    if mode == "mix":
        lists = api_update.VideoUidList(subscribeVideoUids=["#allstream#"])
        return api_update.ClientRequest(streamSubscribe=api_update.StreamSubscribe(videoUidList=lists))
    return api_update.ClientRequest(
        webRecordingConfig=api_update.WebRecordingConfig(onhold=True),
        rtmpPublishConfig=api_update.RtmpPublishConfig(
            outputs=[api_update.Outputs(rtmpUrl="rtmp://cdn.example.com/live/b")]
        ),
    )


def layout_request():
    window = api_update_layout.LayoutConfig(
        uid="1001", x_axis=0, y_axis=0, width=0.5, height=0.5, alpha=1, render_mode=0
    )
    return api_update_layout.ClientRequest(
        mixedVideoLayout=3, backgroundColor="#000000", layoutConfig=[window]
    )


def record(client, mode):
    scene = 1 if mode == "web" else 0
    acquired = client.acquire(
        api_acquire.RequestBodyApiAcquire(
            cname=CNAME, uid=UID, clientRequest=api_acquire.ClientRequest(scene=scene, resourceExpiredHour=24)
        )
    )
    resource_id = acquired.resourceId
    started = client.start(
        api_start.RequestPathParamsApiStart(resource_id=resource_id, mode=mode),
        api_start.RequestBodyApiStart(cname=CNAME, uid=UID, clientRequest=start_request(mode)),
    )
    sid = started.sid
    statuses = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answer = client.query(
            api_query.RequestPathParamsApiQuery(resource_id=resource_id, sid=sid, mode=mode)
        )
        statuses.append(answer.serverResponse.get("status"))
        if statuses[-1] == 5:
            break
        time.sleep(0.1)
    client.update(
        api_update.RequestPathParamsApiUpdate(resource_id=resource_id, sid=sid, mode=mode),
        api_update.RequestBodyApiUpdate(cname=CNAME, uid=UID, clientRequest=update_request(mode)),
    )
    if mode == "mix":
        client.update_layout(
            api_update_layout.RequestPathParamsApiUpdateLayout(resource_id=resource_id, sid=sid, mode=mode),
            api_update_layout.RequestBodyApiUpdateLayout(
                cname=CNAME, uid=UID, clientRequest=layout_request()
            ),
        )
    stopped = client.stop(
        api_stop.RequestPathParamsApiStop(resource_id=resource_id, sid=sid, mode=mode),
        api_stop.RequestBodyApiStop(
            cname=CNAME, uid=UID, clientRequest=api_stop.ClientRequest(async_stop=False)
        ),
    )
    return {"sid": sid, "resourceId": resource_id, "statuses": statuses, "stop": stopped.serverResponse}


def main():
    client = (
        EmulatorClient()
        .with_app_id(APP_ID)
        .with_credential_basic_auth(CUSTOMER_ID, CUSTOMER_SECRET)
        .with_domain(EmulatorDomain(domain.EndpointRegion.US.value))
        .build()
    )
    results = {}
    for mode in ("individual", "mix", "web"):
        results[mode] = record(client, mode)
    print(json.dumps(results))


if __name__ == "__main__":
    code = 0
    try:
        main()
    except Exception:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    os._exit(code)
