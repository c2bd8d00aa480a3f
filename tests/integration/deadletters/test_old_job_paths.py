"""Jobs queued by the previous release still run: RQ stores each job's function as a dotted path, and
notification retries wait up to 3 h in the scheduled registry, so the old paths stay importable (thin aliases
of :mod:`workers.jobs`) for one release."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from rq import Queue
from rq.job import Job

from tests.support.emulated import APP_ID, CUSTOMER_ID, CUSTOMER_SECRET, Sink
from tests.support.notifications import create_recording, run_worker
from workers import deadletters
from workers.core import schema
from workers.core.config import current_settings
from workers.recordings import notify
from workers.recordings.store import timeline


def test_every_job_path_resolves_to_a_function_of_workers_jobs() -> None:
    import workers.jobs

    for path in (schema.JOB_DRAIN, schema.JOB_STEP, schema.JOB_NOTIFY, *schema.OLD_JOB_PATHS):
        module, _, name = path.rpartition(".")
        function = getattr(__import__(module, fromlist=[name]), name)
        new = schema.OLD_JOB_PATHS.get(path, path)
        assert function is getattr(workers.jobs, new.rpartition(".")[2]), path


@pytest.mark.parametrize("path", ["workers.notify.send_notification", "workers.jobs.send_notification"])
def test_a_notification_queued_under_either_path_is_delivered(
    redis_client: redis.Redis, sink: Sink, worker_env: Any, path: str
) -> None:
    """The previous release queued ``workers.notify.send_notification``, and this one still does (its workers
    and the previous release's both run it); the next release queues ``workers.jobs.send_notification``."""
    webhook_id = notify.queue_notification(redis_client, "recording.started", {"id": "rec_x"})
    queue = Queue(schema.NOTIFY_QUEUE, connection=redis_client)
    [queued] = queue.jobs
    assert queued.func_name == schema.JOB_NOTIFY_QUEUED == "workers.notify.send_notification"
    queued.delete()
    job = queue.enqueue(path, webhook_id, queued.args[1], 0, 1.0, None)
    assert job.func_name == path

    run_worker(redis_client, schema.NOTIFY_QUEUE)

    [(headers, body)] = sink.received
    assert headers["Webhook-Id"] == webhook_id and body.decode() == queued.args[1]
    record = notify.load_delivery(redis_client, webhook_id)
    assert record is not None and record["delivered"] is True


def test_a_step_queued_under_the_old_path_runs(
    client: FlaskClient,
    auth: dict[str, str],
    redis_client: redis.Redis,
    worker_env: Any,
    base: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The step talks to the emulator: it acquires a resource for the recording."""
    for name, value in {
        "AGORA_APP_ID": APP_ID,
        "AGORA_CUSTOMER_ID": CUSTOMER_ID,
        "AGORA_CUSTOMER_SECRET": CUSTOMER_SECRET,
        "AGORA_API_BASE_URL": base,
        "AGORA_STORAGE_VENDOR": "1",
        "AGORA_STORAGE_REGION": "0",
        "AGORA_STORAGE_BUCKET": "recordings",
        "AGORA_STORAGE_ACCESS_KEY": "test-access-key",
        "AGORA_STORAGE_SECRET_KEY": "test-storage-secret-key",
    }.items():
        monkeypatch.setenv(name, value)
    current_settings.cache_clear()
    recording_id = create_recording(client, auth)
    queue = Queue(schema.DEFAULT_QUEUE, connection=redis_client)
    for job in queue.jobs:
        job.delete()
    redis_client.delete(schema.recording_queued(recording_id))
    old = queue.enqueue("workers.orchestrator.advance", recording_id, result_ttl=60)

    run_worker(redis_client, schema.DEFAULT_QUEUE)

    finished = Job.fetch(old.id, connection=redis_client)
    assert finished.get_status() == "finished", finished.exc_info
    assert finished.return_value() == "starting"
    assert any(e.get("kind") == "agora" for e in timeline(redis_client, recording_id))
    assert deadletters.list_entries(redis_client)[0] == []


def test_a_failing_job_under_an_old_path_is_dead_lettered_as_its_kind(redis_client: redis.Redis) -> None:
    class OldJob:
        id = "old-1"
        func_name = "workers.notify.send_notification"
        args = ("msg_" + "0" * 24, '{"type":"recording.failed","data":{"id":"rec_x"}}', 7)

    entry_id = deadletters.record_job_failure(
        redis_client, OldJob(), RuntimeError, RuntimeError("down"), None
    )
    assert entry_id is not None
    assert deadletters.get(redis_client, entry_id).kind == "notification"  # type: ignore[union-attr]
