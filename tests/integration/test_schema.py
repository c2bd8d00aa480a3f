"""The Redis schema: every name the service writes comes from ``workers.core.schema``, and every Lua script
from ``workers.core.scripts``. Each test's Redis keys are checked against the schema when the test ends
(``tests/support/redis_server.py``: ``assert_known_keys``); these tests check the checker and the scripts."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import redis

from workers.core import schema, scripts

ROOT = Path(__file__).resolve().parents[2]


def builders() -> list[tuple[str, str]]:
    """Every key the schema can name: (builder, an example name)."""
    names = []
    for name, value in vars(schema).items():
        if isinstance(value, str) and value.startswith(schema.PREFIX + ":"):
            names.append((name, value))
        elif inspect.isfunction(value) and value.__module__ == schema.__name__ and not name.startswith("_"):
            if name in schema.NOT_KEY_BUILDERS:
                continue
            parameters = inspect.signature(value).parameters
            names.append((name, value(*("task:x:1" if p in schema._FREE_FORM else "y" for p in parameters))))
    return names


def test_every_name_of_the_schema_is_known_and_others_are_not() -> None:
    examples = builders()
    assert len(examples) >= 40
    assert schema.unknown_keys(name for _, name in examples) == []
    outside = ["acr:bogus", "acr:rec:rec_1:extra:part", "acr:inbox:1:other", "other:key", "acrrec"]
    assert schema.unknown_keys([*outside, "rq:queue:ncs", b"acr:stats"]) == sorted(outside)


def test_every_script_compiles_and_is_loaded_by_its_sha(redis_client: redis.Redis) -> None:
    assert len(scripts.ALL) >= 16
    for name, script in scripts.ALL.items():
        assert redis_client.script_load(script.source) == script.sha, name


def test_scripts_spell_no_key_name() -> None:
    """A key a script touches comes through KEYS (named by the schema): no script spells a prefix."""
    for name, script in scripts.ALL.items():
        assert "acr" not in script.source and "rq:" not in script.source, name


def test_no_module_writes_a_key_name_of_its_own() -> None:
    """Only the schema spells the prefix; everything else asks it."""
    offenders = []
    for top in ("workers", "webhook_service", "bench"):
        for path in (ROOT / top).rglob("*.py"):
            if path.name == "schema.py":
                continue
            text = path.read_text()
            for number, line in enumerate(text.splitlines(), 1):
                if re.search(r"""["']acr:|schema\.PREFIX|["']rq:(queue|job|wip)""", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_a_script_runs_after_redis_forgot_it(redis_client: redis.Redis) -> None:
    """Redis restarted or flushed its script cache: the first call sends the text again."""
    redis_client.script_flush()
    assert scripts.KEEP_MAX(redis_client, keys=[schema.STATS], args=["m", 5]) == 0
    assert redis_client.hget(schema.STATS, "m") == b"5"
    with redis_client.pipeline() as pipe:
        redis_client.script_flush()
        scripts.KEEP_MAX(pipe, keys=[schema.STATS], args=["m", 9])
        pipe.execute()
    assert redis_client.hget(schema.STATS, "m") == b"9"
