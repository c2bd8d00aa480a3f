"""Typed request bodies: wire names, local checks that name the field, secrets kept out of repr."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.emulated import ACCESS_KEY, SECRET_KEY, start_body, storage
from workers.agora import (
    AcquireClientRequest,
    AcquireRequest,
    AgoraRequestError,
    LayoutConfig,
    RecordingFileConfig,
    StartClientRequest,
    StartRequest,
    StopRequest,
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
from workers.agora.bodies import check_cname, check_uid


def rejects(field: str, check: Any, *args: Any) -> AgoraRequestError:
    with pytest.raises(AgoraRequestError) as caught:
        check(*args)
    assert caught.value.field == field, str(caught.value)
    return caught.value


def test_start_body_uses_agora_wire_names() -> None:
    """camelCase on the wire, snake_case where Agora uses it (x_axis, render_mode, async_stop)."""
    body = start_body(
        "mix",
        transcoding_config=TranscodingConfig(
            width=640,
            height=360,
            fps=15,
            bitrate=500,
            mixed_video_layout=3,
            layout_config=[LayoutConfig(x_axis=0.0, y_axis=0.0, width=1.0, height=1.0, render_mode=1)],
        ),
    )
    body.check("mix")
    wire = body.to_json()
    config = wire["clientRequest"]["recordingConfig"]
    assert config["transcodingConfig"]["layoutConfig"] == [
        {"x_axis": 0.0, "y_axis": 0.0, "width": 1.0, "height": 1.0, "render_mode": 1}
    ]
    assert wire["clientRequest"]["storageConfig"]["accessKey"] == ACCESS_KEY
    assert "decryptionMode" not in config  # unset fields are left out, not sent as null
    assert StopRequest(cname="a", uid="1").to_json() == {
        "cname": "a",
        "uid": "1",
        "clientRequest": {"async_stop": False},
    }


def test_repr_never_shows_storage_keys_or_tokens() -> None:
    """Storage keys and the RTC token stay out of repr and str."""
    body = start_body("individual")
    body.client_request.token = "rtc-token-value"
    text = repr(body) + str(body) + repr(storage())
    for secret in (ACCESS_KEY, SECRET_KEY, "rtc-token-value"):
        assert secret not in text


@pytest.mark.parametrize(
    ("uid", "ok"),
    [
        ("1", True),
        ("4294967295", True),
        ("0", False),
        ("4294967296", False),
        ("01", False),
        ("12a", False),
        ("", False),
        ("-5", False),
    ],
)
def test_uid_rule(uid: str, ok: bool) -> None:
    """uid is the decimal string of an integer 1..2^32-1."""
    if ok:
        check_uid("uid", uid)
    else:
        rejects("uid", check_uid, "uid", uid)


@given(st.integers(min_value=-(2**40), max_value=2**40))
def test_uid_rule_property(number: int) -> None:
    """Any integer's decimal string is accepted exactly when it is within 1..2^32-1."""
    try:
        check_uid("uid", str(number))
        accepted = True
    except AgoraRequestError:
        accepted = False
    assert accepted == (1 <= number <= 2**32 - 1)


def test_cname_rules_depend_on_mode() -> None:
    """RTC channel names are short and of a limited charset; web mode only labels the task."""
    check_cname("cname", "class 7-B_(2)", "mix")
    rejects("cname", check_cname, "cname", "x" * 64, "mix")
    rejects("cname", check_cname, "cname", "emoji🎥", "individual")
    rejects("cname", check_cname, "cname", "", "web")
    check_cname("cname", "https://school.example/class/7?x=émoji", "web")


@pytest.mark.parametrize(
    ("mode", "mutate", "field"),
    [
        (
            "mix",
            lambda b: setattr(b.client_request.recording_config, "max_idle_time", 3),
            "clientRequest.recordingConfig.maxIdleTime",
        ),
        (
            "mix",
            lambda b: setattr(b.client_request.recording_config, "channel_type", 2),
            "clientRequest.recordingConfig.channelType",
        ),
        (
            "mix",
            lambda b: setattr(
                b.client_request.recording_config, "subscribe_audio_uids", [str(i) for i in range(1, 34)]
            ),
            "clientRequest.recordingConfig.subscribeAudioUids",
        ),
        (
            "individual",
            lambda b: (
                setattr(b.client_request.recording_config, "subscribe_video_uids", ["1"]),
                setattr(b.client_request.recording_config, "unsubscribe_video_uids", ["2"]),
            ),
            "clientRequest.recordingConfig.unsubscribeVideoUids",
        ),
        (
            "individual",
            lambda b: setattr(
                b.client_request, "recording_file_config", RecordingFileConfig(av_file_type=["hls", "mp4"])
            ),
            "clientRequest.recordingFileConfig.avFileType",
        ),
        (
            "mix",
            lambda b: setattr(
                b.client_request, "recording_file_config", RecordingFileConfig(av_file_type=["mp4"])
            ),
            "clientRequest.recordingFileConfig.avFileType",
        ),
        (
            "mix",
            lambda b: setattr(b.client_request.storage_config, "vendor", 4),
            "clientRequest.storageConfig.vendor",
        ),
        (
            "mix",
            lambda b: setattr(b.client_request.storage_config, "secret_key", ""),
            "clientRequest.storageConfig.secretKey",
        ),
        (
            "mix",
            lambda b: setattr(b.client_request.storage_config, "file_name_prefix", ["ok", "not/ok"]),
            "clientRequest.storageConfig.fileNamePrefix[1]",
        ),
        (
            "individual",
            lambda b: setattr(b.client_request.recording_config, "audio_profile", 1),
            "clientRequest.recordingConfig.audioProfile",
        ),
        (
            "web",
            lambda b: (
                setattr(
                    b.client_request.extension_service_config.extension_services[0].service_param,
                    "video_width",
                    1920,
                )
                or setattr(
                    b.client_request.extension_service_config.extension_services[0].service_param,
                    "video_height",
                    1920,
                )
            ),
            "clientRequest.extensionServiceConfig.extensionServices[0].serviceParam.videoWidth",
        ),
        (
            "web",
            lambda b: setattr(
                b.client_request.extension_service_config.extension_services[0].service_param,
                "max_recording_hour",
                721,
            ),
            "clientRequest.extensionServiceConfig.extensionServices[0].serviceParam.maxRecordingHour",
        ),
        (
            "web",
            lambda b: setattr(
                b.client_request.extension_service_config.extension_services[1].service_param.outputs[0],
                "rtmp_url",
                "http://cdn/x",
            ),
            "clientRequest.extensionServiceConfig.extensionServices[1].serviceParam.outputs[0].rtmpUrl",
        ),
    ],
)
def test_start_checks_name_the_field(mode: str, mutate: Any, field: str) -> None:
    """What Agora would reject is refused locally, and the message names the wire field."""
    body = start_body(mode, rtmp=True) if mode == "web" else start_body(mode)  # type: ignore[arg-type]
    body.check(mode)  # type: ignore[arg-type]
    mutate(body)
    error = rejects(field, body.check, mode)
    assert field in str(error)


def test_mode_specific_parts() -> None:
    """Web needs extension services; individual/mix need recordingConfig; layouts only in mix; scene fits the mode."""
    web_as_mix = start_body("web")
    rejects("clientRequest.extensionServiceConfig", web_as_mix.check, "mix")
    mix_as_web = start_body("mix")
    rejects("clientRequest.extensionServiceConfig", mix_as_web.check, "web")
    no_config = StartRequest(cname="a", uid="1", client_request=StartClientRequest(storage_config=storage()))
    rejects("clientRequest.recordingConfig", no_config.check, "individual")
    layout = UpdateLayoutRequest(
        cname="a", uid="1", client_request=UpdateLayoutClientRequest(mixed_video_layout=1)
    )
    rejects("mode", layout.check, "individual")
    acquire = AcquireRequest(cname="a", uid="1", client_request=AcquireClientRequest(scene=0))
    rejects("clientRequest.scene", acquire.check, "web")
    rejects(
        "clientRequest.resourceExpiredHour",
        AcquireRequest(
            cname="a", uid="1", client_request=AcquireClientRequest(resource_expired_hour=0)
        ).check,
        None,
    )


def test_update_checks() -> None:
    """An update changes something, and only what its mode supports; each list keeps to its media."""
    empty = UpdateRequest(cname="a", uid="1", client_request=UpdateClientRequest())
    rejects("clientRequest", empty.check, "mix")
    onhold = UpdateRequest(
        cname="a",
        uid="1",
        client_request=UpdateClientRequest(web_recording_config=WebRecordingConfig(onhold=True)),
    )
    onhold.check("web")
    rejects("clientRequest.webRecordingConfig", onhold.check, "mix")
    misplaced = UpdateRequest(
        cname="a",
        uid="1",
        client_request=UpdateClientRequest(
            stream_subscribe=StreamSubscribe(audio_uid_list=UidLists(subscribe_video_uids=["5"]))
        ),
    )
    rejects("clientRequest.streamSubscribe.audioUidList.subscribeVideoUids", misplaced.check, "mix")


def test_from_json_dict_names_the_field_of_a_type_error() -> None:
    """Bodies built from JSON report type errors with the wire path."""
    with pytest.raises(AgoraRequestError) as caught:
        from_json_dict(
            StartRequest, {"cname": "a", "uid": "1", "clientRequest": {"storageConfig": {"vendor": "s3"}}}
        )
    assert caught.value.field == "clientRequest.storageConfig.vendor"
    with pytest.raises(AgoraRequestError) as unknown:
        from_json_dict(
            StartRequest,
            {
                "cname": "a",
                "uid": "1",
                "clientRequest": {"storageConfig": storage().to_json(), "surprise": 1},
            },
        )
    assert "surprise" in str(unknown.value)
