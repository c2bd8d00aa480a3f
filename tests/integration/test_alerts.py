"""deploy/: the Prometheus alert rules pass ``promtool`` (check and unit tests), carry the annotations an on-call
needs, and they and the Grafana dashboard only use metrics a real scrape of ``/metrics`` serves."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from webhook_service import create_app
from workers.agora.ratelimit import RateLimiter
from workers.core import schema
from workers.core.config import Settings
from workers.core.measure import record_agora, record_applied, record_state

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARDS = sorted((DEPLOY / "grafana").glob("*.json"))
METRIC = re.compile(r"\bacr_[a-z0-9_]+")
#: What the README and the brief promise an alert for.
EXPECTED_ALERTS = {
    "AcrRedisDown",
    "AcrCallbackBacklogOld",
    "AcrDeadLettersRising",
    "AcrAgoraErrors",
    "AcrUploadsUnconfirmed",
    "AcrUploadingTooLong",
    "AcrRecordingsFailing",
    "AcrTimersOverdue",
}


def promtool() -> str:
    """promtool, which `make test` installs (Debian package prometheus); its absence is a failure, not a skip."""
    path = shutil.which("promtool")
    assert path, "promtool is missing: install the Debian package prometheus (`make test` does)"
    return path


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    exprs = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            exprs.extend(target["expr"] for target in panel.get("targets", []))
    return exprs


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=RULE_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_says_what_happened_and_what_to_do() -> None:
    alerts = {rule["alert"]: rule for rule in rules()}
    assert EXPECTED_ALERTS <= set(alerts), EXPECTED_ALERTS - set(alerts)
    readme = (RULES.parent.parent.parent / "README.md").read_text()
    for name, rule in alerts.items():
        annotations = rule.get("annotations", {})
        for field in ("summary", "description", "runbook"):
            assert annotations.get(field, "").strip(), f"{name} has no {field}"
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert f"`{name}`" in readme, f"the README's runbook does not cover {name}"


def test_the_dashboard_is_grafana_json() -> None:
    assert DASHBOARDS, "no dashboard in deploy/grafana"
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["title"] and dashboard["uid"] and dashboard["panels"]
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in dashboard["panels"]:
            assert panel["type"] == "row" or panel.get("targets"), (
                f"{path.name}: {panel['title']} has no query"
            )


@pytest.fixture
def scraped(redis_client: redis.Redis, settings: Settings) -> set[str]:
    """The sample names of a scrape after every kind of measurement was recorded once."""
    redis_client.zadd(schema.ACTIVE_RECORDINGS, {"rec_a": 1})
    record_state(redis_client, "rec_a", "uploading", terminal=False, entered=True)
    record_state(redis_client, "rec_b", "failed", terminal=True, entered=True)
    record_agora(redis_client, "start", "ok", 0.2)
    redis_client.xadd(schema.inbox(0), {"n": "x", "b": b"{}"})
    record_applied(redis_client, [(b"1-0", {})])
    RateLimiter(redis_client, "app-1", 10).try_take()
    app = create_app(dataclasses.replace(settings, agora_app_id="app-1"))
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_the_alerts_use_only_metrics_the_service_serves(scraped: set[str]) -> None:
    used = {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    assert used and used - scraped == set()


def test_the_dashboard_uses_only_metrics_the_service_serves(scraped: set[str]) -> None:
    used = {name for expr in dashboard_exprs() for name in METRIC.findall(expr)}
    assert len(used) > 20 and used - scraped == set()
