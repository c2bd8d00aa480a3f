"""``python -m workers.agora``: record a channel once through the configured Agora (or the emulator).

    python -m workers.agora demo --cname demo --mode mix --seconds 30

Reads ``AGORA_*`` and ``AGORA_STORAGE_*`` from the environment like the service does (Redis is not used).
Prints the sid, the status and files every few seconds, then stops and prints the upload result.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from workers.agora.bodies import (
    AcquireClientRequest,
    AcquireRequest,
    ExtensionService,
    ExtensionServiceConfig,
    RecordingConfig,
    RecordingFileConfig,
    ServiceParam,
    StartClientRequest,
    StartRequest,
    StopRequest,
    StorageConfig,
    storage_from_settings,
)
from workers.agora.client import AgoraClient
from workers.agora.errors import AgoraError
from workers.core.config import Settings
from workers.core.errors import ConfigError


def demo(args: argparse.Namespace) -> int:
    """acquire, start, poll query, stop."""
    # This command needs no Redis; give Settings a placeholder so only the Agora variables matter.
    env = {"REDIS_URL": "redis://127.0.0.1:6379/0", "APP_ENV": "development", **os.environ}
    settings = Settings.from_env(env)
    storage = storage_from_settings(settings)
    if storage is None and settings.agora_api_base_url:
        print("no AGORA_STORAGE_* configured: using a placeholder bucket (fine for the emulator)", flush=True)
        storage = StorageConfig(
            vendor=1, region=0, bucket="demo-recordings", access_key="demo", secret_key="demo"
        )
    if storage is None:
        raise ConfigError("AGORA_STORAGE_VENDOR and AGORA_STORAGE_BUCKET (and keys) are needed to record")
    client = AgoraClient.from_settings(settings)
    mode = args.mode
    if mode == "web":
        service = ExtensionService(
            service_name="web_recorder_service",
            service_param=ServiceParam(url=args.url, max_recording_hour=1),
        )
        request = StartClientRequest(
            storage_config=storage,
            extension_service_config=ExtensionServiceConfig(extension_services=[service]),
            recording_file_config=RecordingFileConfig(av_file_type=["hls", "mp4"]),
        )
    else:
        request = StartClientRequest(
            storage_config=storage, recording_config=RecordingConfig(channel_type=args.channel_type)
        )
    scene = 1 if mode == "web" else 0
    resource = client.acquire(
        AcquireRequest(cname=args.cname, uid=args.uid, client_request=AcquireClientRequest(scene=scene)),
        mode=mode,
    )
    assert resource.resource_id is not None
    started = client.start(
        resource.resource_id, mode, StartRequest(cname=args.cname, uid=args.uid, client_request=request)
    )
    assert started.sid is not None
    print(f"started {mode} recording of {args.cname!r}: sid {started.sid}", flush=True)
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
        report = client.query(resource.resource_id, started.sid, mode)
        print(f"  status {report.status}  files {[f.file_name for f in report.files]}", flush=True)
    stopped = client.stop(
        resource.resource_id, started.sid, mode, StopRequest(cname=args.cname, uid=args.uid)
    )
    print(f"stopped: upload {stopped.uploading_status}, files {[f.file_name for f in stopped.files]}")
    print(f"sid {started.sid}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run it; errors become one line on stderr."""
    parser = argparse.ArgumentParser(
        prog="python -m workers.agora",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="record a channel for a while, then stop")
    run.add_argument("--cname", default="demo")
    run.add_argument("--uid", default="527841", help="the recorder's uid in the channel")
    run.add_argument("--mode", choices=("individual", "mix", "web"), default="mix")
    run.add_argument("--seconds", type=float, default=30.0)
    run.add_argument("--channel-type", type=int, choices=(0, 1), default=0)
    run.add_argument("--url", default="https://example.com/", help="page to record in web mode")
    args = parser.parse_args(argv)
    try:
        return demo(args)
    except (AgoraError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
