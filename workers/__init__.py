"""Workers: everything that happens after a callback or a request is accepted.

Packages, each depending only on those before it:

* :mod:`workers.core` — settings, errors, logs, redaction, the Redis schema, measurements;
* :mod:`workers.agora` — Agora's REST API: bodies, client, answers, the shared rate limit (``core`` only);
* :mod:`workers.ncs` — the NCS inbox, the drain and the session reducer and store;
* :mod:`workers.recordings` — recordings and their orchestration, notifications to the app server.

At the top level, the RQ runtime: :mod:`workers.jobs` (the only module whose functions are queued),
:mod:`workers.worker`, :mod:`workers.rq_config`, and :mod:`workers.deadletters` (what failed for good, and its
replay). ``webhook_service`` may import this package; this package never imports ``webhook_service``.
"""
