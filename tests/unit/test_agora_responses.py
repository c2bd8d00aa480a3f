"""Agora's answers read leniently, and the one table from (endpoint, status, code) to an outcome."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.agora import Outcome, RecordingReport, classify
from workers.agora.responses import parse_files


def report(server_response: Any) -> RecordingReport:
    return RecordingReport({"resourceId": "r", "sid": "s", "serverResponse": server_response}, "req-1")


def test_string_numbers_and_booleans_are_read() -> None:
    """Older examples render numbers and booleans as strings."""
    answer = report(
        {
            "status": "5",
            "fileListMode": "json",
            "fileList": [
                {"filename": "a.m3u8", "isPlayable": "true", "sliceStartTime": "1619172871089", "uid": 57297}
            ],
        }
    )
    assert answer.status == 5 and answer.running
    [file] = answer.files
    assert (file.file_name, file.is_playable, file.slice_start_time, file.uid) == (
        "a.m3u8",
        True,
        1619172871089,
        "57297",
    )


def test_file_list_as_string_or_json() -> None:
    """fileListMode "string" carries one playlist name; "json" a list of objects (fileName or filename)."""
    assert [f.file_name for f in report({"fileListMode": "string", "fileList": "sid_room.m3u8"}).files] == [
        "sid_room.m3u8"
    ]
    listed = report(
        {
            "fileListMode": "json",
            "fileList": [{"fileName": "x.m3u8", "trackType": "audio"}, {"filename": "x_0.mp4"}],
        }
    )
    assert [(f.file_name, f.track_type) for f in listed.files] == [("x.m3u8", "audio"), ("x_0.mp4", None)]
    assert [f.file_name for f in parse_files("a.m3u8;b.ts")] == ["a.m3u8", "b.ts"]


def test_web_extension_service_state() -> None:
    """Web mode reports files, state and upload status per service."""
    answer = report(
        {
            "extensionServiceState": [
                {
                    "serviceName": "web_recorder_service",
                    "payload": {
                        "fileList": [{"filename": "w.m3u8", "sliceStartTime": 1}],
                        "state": "inProgress",
                        "onhold": False,
                    },
                },
                {
                    "serviceName": "rtmp_publish_service",
                    "payload": {"outputs": [{"rtmpUrl": "rtmp://x", "status": "publishing"}]},
                },
                {"serviceName": "upload_service", "payload": {"uploadingStatus": "backuped"}},
            ]
        }
    )
    assert answer.running and answer.status is None
    assert [f.file_name for f in answer.files] == ["w.m3u8"]
    assert answer.uploading_status == "backuped"
    assert answer.services[1].outputs == [{"rtmpUrl": "rtmp://x", "status": "publishing"}]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "status",
                    "fileList",
                    "fileName",
                    "filename",
                    "payload",
                    "serviceName",
                    "extensionServiceState",
                    "uploadingStatus",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@given(json_values)
def test_any_json_shape_is_read_without_exceptions(server_response: Any) -> None:
    """Whatever shape serverResponse has, reading it never raises."""
    answer = report(server_response)
    _ = (
        answer.status,
        answer.running,
        answer.files,
        answer.uploading_status,
        answer.services,
        answer.file_list_mode,
        answer.slice_start_time,
    )


@pytest.mark.parametrize(
    ("endpoint", "status", "code", "outcome"),
    [
        ("start", 200, None, Outcome.OK),
        ("start", 201, 7, Outcome.ALREADY_RUNNING),
        ("start", 400, 53, Outcome.ALREADY_RUNNING),
        ("start", 206, 65, Outcome.RETRY),
        ("query", 206, 65, Outcome.RETRY),
        ("start", 500, 62, Outcome.RETRY),
        ("query", 504, 62, Outcome.RETRY),
        ("start", 500, 502, Outcome.REACQUIRE),
        ("start", 400, 433, Outcome.REACQUIRE),
        ("start", 400, 1001, Outcome.REACQUIRE),
        ("acquire", 500, 501, Outcome.RETRY),
        ("acquire", 400, 406, Outcome.OVER_CAPACITY),
        ("stop", 400, 49, Outcome.ALREADY_STOPPED),
        ("stop", 404, 404, Outcome.ALREADY_STOPPED),
        ("stop", 206, 435, Outcome.NOTHING_RECORDED),
        ("query", 404, 404, Outcome.NOT_FOUND),
        ("query", 404, None, Outcome.REJECTED),  # "no Route matched": our URL is wrong
        ("update", 429, None, Outcome.RATE_LIMITED),
        ("start", 400, 2, Outcome.REJECTED),
        ("start", 401, None, Outcome.REJECTED),
        ("start", 400, 432, Outcome.REJECTED),
        ("query", 400, 1003, Outcome.REJECTED),
        ("stop", 503, None, Outcome.RETRY),
        ("stop", 599, None, Outcome.RETRY),
    ],
)
def test_outcome_table(endpoint: str, status: int, code: int | None, outcome: Outcome) -> None:
    """Each documented answer maps to what the caller must do (docs/agora.md §3.9)."""
    assert classify(endpoint, status, code) is outcome
