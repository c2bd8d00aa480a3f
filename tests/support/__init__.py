"""Support code shared by the whole suite (unit, integration, e2e) and by ``bench/``: real Redis servers and
the per-test key check, the service stack as processes, the Agora emulator's helpers, the fake Agora of the
decision tests, NCS callback builders, polling on a condition."""
