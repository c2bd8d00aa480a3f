"""Request checks as Agora's service makes them, on raw JSON (independent of the project's own client).

Each failure is a :class:`Reject` carrying the HTTP status and the body Agora would answer: ``{"code", "reason"}``
for the service's checks (code 2 invalid parameter, 1013 channel name, ...), ``{"message"}`` for the gateway's.
Casing variants that Agora's documents disagree on (``unsubscribeAudioUids`` / ``unSubscribeAudioUids``) are
both accepted (``docs/agora.md`` §3.5, §5).
"""

from __future__ import annotations

import re
from typing import Any


class Reject(Exception):
    """An answer other than success: HTTP status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def invalid(reason: str, code: int = 2, status: int = 400) -> Reject:
    """Agora's "invalid parameter" style answer."""
    return Reject(status, {"code": code, "reason": reason})


_CNAME_RE = re.compile(r"^[A-Za-z0-9 !#$%&()+\-:;<=.>?@\[\]^_{|}~,]{1,63}$")
_UID_RE = re.compile(r"^[1-9][0-9]{0,9}$")


def is_uid(value: object) -> bool:
    """A uid string: integer 1..2^32-1."""
    return isinstance(value, str) and bool(_UID_RE.match(value)) and int(value) <= 2**32 - 1


def obj(value: object, name: str, what: str) -> dict[str, Any]:
    """A JSON object field, else code 2."""
    if not isinstance(value, dict):
        raise invalid(f"{what}: invalid {name}")
    return value


def integer(
    data: dict[str, Any], name: str, what: str, low: int, high: int, required: bool = False
) -> int | None:
    """An integer field within range (absent allowed unless ``required``)."""
    value = data.get(name)
    if value is None:
        if required:
            raise invalid(f"{what}: {name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"{what}: invalid {name} value!")
    return value


def channel(body: dict[str, Any], what: str, web: bool) -> tuple[str, str]:
    """``cname`` and ``uid`` of any body."""
    cname, uid = body.get("cname"), body.get("uid")
    if not isinstance(cname, str) or not cname:
        raise invalid(f"{what}: invalid cname")
    if web:
        if len(cname.encode()) > 1024:
            raise invalid(f"{what}: invalid cname")
    elif not _CNAME_RE.match(cname):
        raise Reject(400, {"code": 1013, "reason": "invalid channel name"})
    if not is_uid(uid):
        raise invalid(f"{what}: invalid uid")
    assert isinstance(uid, str)
    return cname, uid


def acquire(body: dict[str, Any]) -> tuple[str, str, int, int]:
    """cname, uid, scene, resourceExpiredHour of an acquire body."""
    request = body.get("clientRequest", {})
    request = obj(request, "clientRequest", "Acquire")
    scene = integer(request, "scene", "Acquire", 0, 2) or 0
    cname, uid = channel(body, "Acquire", web=scene == 1)
    hours = integer(request, "resourceExpiredHour", "Acquire", 1, 720)
    if "region" in request and request["region"] not in ("CN", "AP", "EU", "NA"):
        raise invalid("Acquire: invalid region")
    return cname, uid, scene, hours or 72


def uid_list(data: dict[str, Any], name: str, what: str) -> list[str] | None:
    """A subscription list, ≤ 32 uids or ``["#allstream#"]``."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > 32:
        raise invalid(f"{what}: invalid {name}")
    if value == ["#allstream#"]:
        return value
    if not all(is_uid(item) for item in value):
        raise invalid(f"{what}: invalid {name}")
    return list(value)


def subscriptions(data: dict[str, Any], what: str) -> dict[str, list[str] | None]:
    """The four lists (either casing of "unsubscribe"); white and black list of one media exclude each other."""
    result: dict[str, list[str] | None] = {}
    for media in ("Audio", "Video"):
        sub = uid_list(data, f"subscribe{media}Uids", what)
        unsub = uid_list(data, f"unsubscribe{media}Uids", what) or uid_list(
            data, f"unSubscribe{media}Uids", what
        )
        if sub is not None and unsub is not None:
            raise invalid(f"{what}: subscribe{media}Uids and unsubscribe{media}Uids are exclusive")
        result[f"subscribe{media}"] = sub
        result[f"unsubscribe{media}"] = unsub
    return result


def storage(value: object, what: str) -> None:
    """``storageConfig``."""
    config = obj(value, "storageConfig", what)
    vendor = integer(config, "vendor", what, 0, 100, required=True)
    if vendor not in (1, 2, 3, 5, 6, 7, 8, 11):
        raise invalid(f"{what}: invalid vendor")
    integer(config, "region", what, 0, 100, required=True)
    for name in ("bucket", "accessKey", "secretKey"):
        if not isinstance(config.get(name), str) or not config[name]:
            raise invalid(f"{what}: invalid {name}")
    prefix = config.get("fileNamePrefix")
    if prefix is not None:
        if not isinstance(prefix, list) or not all(
            isinstance(p, str) and p.isalnum() and p.isascii() for p in prefix
        ):
            raise invalid(f"{what}: invalid fileNamePrefix")
        if len("/".join(prefix)) > 128:
            raise invalid(f"{what}: invalid fileNamePrefix")
    if vendor == 11 and not (
        isinstance(config.get("extensionParams"), dict) and config["extensionParams"].get("endpoint")
    ):
        raise invalid(f"{what}: extensionParams.endpoint is required")


def start(body: dict[str, Any], mode: str) -> dict[str, Any]:
    """A start body for ``mode``; returns what the emulated task needs to know."""
    what = "Start"
    request = obj(body.get("clientRequest"), "clientRequest", what)
    storage(request.get("storageConfig"), what)
    file_types = ["hls"]
    file_config = request.get("recordingFileConfig")
    if file_config is not None:
        file_types = obj(file_config, "recordingFileConfig", what).get("avFileType")  # type: ignore[assignment]
        if file_types not in (["hls"], ["hls", "mp4"], ["mp4", "hls"]):
            raise invalid(f"{what}: invalid avFileType")
        if "mp4" in file_types and mode == "individual":
            raise invalid(f"{what}: invalid avFileType")
    info: dict[str, Any] = {
        "fileTypes": file_types,
        "prefix": request["storageConfig"].get("fileNamePrefix") or [],
    }
    if mode == "web":
        return info | web_services(request.get("extensionServiceConfig"), what)
    config = obj(request.get("recordingConfig"), "recordingConfig", what)
    integer(config, "channelType", what, 0, 1)
    integer(config, "decryptionMode", what, 0, 8)
    info["maxIdleTime"] = integer(config, "maxIdleTime", what, 5, 2_592_000) or 30
    info["streamTypes"] = (
        2 if config.get("streamTypes") is None else integer(config, "streamTypes", what, 0, 2)
    )
    info["channelType"] = config.get("channelType") or 0
    info["subscriptions"] = subscriptions(config, what)
    integer(config, "subscribeUidGroup", what, 0, 5)
    if mode == "mix":
        integer(config, "audioProfile", what, 0, 2)
        transcoding = config.get("transcodingConfig")
        if transcoding is not None:
            layout(obj(transcoding, "transcodingConfig", what), what)
            width = integer(transcoding, "width", what, 16, 1920, required=True) or 0
            height = integer(transcoding, "height", what, 16, 1920, required=True) or 0
            integer(transcoding, "fps", what, 1, 30, required=True)
            integer(transcoding, "bitrate", what, 1, 10_000_000, required=True)
            if width * height > 1920 * 1080:
                raise invalid(f"{what}: invalid transcodingConfig resolution")
    elif "transcodingConfig" in config:
        raise invalid(f"{what}: transcodingConfig is only for mix mode")
    snapshot = request.get("snapshotConfig")
    if snapshot is not None:
        if mode != "individual":
            raise invalid(f"{what}: snapshotConfig is only for individual mode")
        interval = integer(obj(snapshot, "snapshotConfig", what), "captureInterval", what, 5, 3600)
        info["captureInterval"] = interval or 10
    return info


def layout(config: dict[str, Any], what: str) -> None:
    """The layout fields of ``transcodingConfig`` and ``updateLayout``."""
    kind = integer(config, "mixedVideoLayout", what, 0, 3)
    windows = config.get("layoutConfig")
    if windows is not None:
        if not isinstance(windows, list) or len(windows) > 17 or kind != 3:
            raise invalid(f"{what}: invalid layoutConfig")
        for window in windows:
            window = obj(window, "layoutConfig", what)
            for name in ("x_axis", "y_axis", "width", "height"):
                value = window.get(name)
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                    raise invalid(f"{what}: invalid layoutConfig.{name}")
    color = config.get("backgroundColor")
    if color is not None and not (isinstance(color, str) and re.match(r"^#[0-9A-Fa-f]{6}$", color)):
        raise invalid(f"{what}: invalid backgroundColor")


def web_services(value: object, what: str) -> dict[str, Any]:
    """``extensionServiceConfig`` of a web start: one web recorder, at most one RTMP publisher."""
    config = obj(value, "extensionServiceConfig", what)
    services = config.get("extensionServices")
    if not isinstance(services, list) or not services:
        raise invalid(f"{what}: invalid extensionServices")
    info: dict[str, Any] = {"rtmpUrls": [], "maxRecordingHour": 72}
    seen: list[str] = []
    for service in services:
        service = obj(service, "extensionServices", what)
        name = service.get("serviceName")
        param = obj(service.get("serviceParam"), "serviceParam", what)
        seen.append(str(name))
        if name == "web_recorder_service":
            url = param.get("url")
            if not isinstance(url, str) or not re.match(r"^https?://.+", url):
                raise invalid(f"{what}: invalid url")
            width = integer(param, "videoWidth", what, 240, 1920) or 1280
            height = integer(param, "videoHeight", what, 240, 1920) or 720
            if width * height > 1920 * 1080:
                raise invalid(f"{what}: invalid videoWidth/videoHeight")
            info["maxRecordingHour"] = integer(param, "maxRecordingHour", what, 1, 720, required=True)
            integer(param, "videoFps", what, 5, 60)
            integer(param, "maxVideoDuration", what, 30, 240)
            integer(param, "readyTimeout", what, 0, 60)
            info["onhold"] = bool(param.get("onhold", False))
        elif name == "rtmp_publish_service":
            info["rtmpUrls"] = rtmp_outputs(param, what)
        else:
            raise invalid(f"{what}: invalid serviceName")
    if seen.count("web_recorder_service") != 1 or seen.count("rtmp_publish_service") > 1:
        raise invalid(f"{what}: invalid extensionServices")
    return info


def rtmp_outputs(param: dict[str, Any], what: str) -> list[str]:
    """One rtmp:// or rtmps:// output."""
    outputs = param.get("outputs")
    if not isinstance(outputs, list) or len(outputs) != 1:
        raise invalid(f"{what}: invalid outputs")
    url = obj(outputs[0], "outputs", what).get("rtmpUrl")
    if not isinstance(url, str) or not re.match(r"^rtmps?://.+", url):
        raise invalid(f"{what}: invalid rtmpUrl")
    return [url]


def update(body: dict[str, Any], mode: str) -> dict[str, Any]:
    """An update body: returns the parts to apply."""
    what = "Update"
    request = obj(body.get("clientRequest"), "clientRequest", what)
    changes: dict[str, Any] = {}
    if "streamSubscribe" in request:
        if mode == "web":
            raise invalid(f"{what}: streamSubscribe is not for web mode")
        subscribe = obj(request["streamSubscribe"], "streamSubscribe", what)
        lists: dict[str, Any] = {}
        for part in ("audioUidList", "videoUidList"):
            if part in subscribe:
                lists |= {
                    k: v
                    for k, v in subscriptions(obj(subscribe[part], part, what), what).items()
                    if v is not None
                }
        changes["subscriptions"] = lists
    if "webRecordingConfig" in request:
        onhold = obj(request["webRecordingConfig"], "webRecordingConfig", what).get("onhold")
        if mode != "web" or not isinstance(onhold, bool):
            raise invalid(f"{what}: invalid webRecordingConfig")
        changes["onhold"] = onhold
    if "rtmpPublishConfig" in request:
        if mode != "web":
            raise invalid(f"{what}: rtmpPublishConfig is only for web mode")
        changes["rtmpUrls"] = rtmp_outputs(obj(request["rtmpPublishConfig"], "rtmpPublishConfig", what), what)
    if "storageConfig" in request:
        storage(request["storageConfig"], what)
        changes["storage"] = True
    if not changes:
        raise invalid(f"{what}: nothing to update")
    return changes
