"""Gunicorn settings for the web process (``gunicorn -c gunicorn.conf.py 'webhook_service:create_app()'``).

Threaded workers keep HTTP connections alive, as Agora asks of NCS receivers (keep-alive >= 10 s); with
sync workers every callback would pay a new TCP connection. Figures behind these defaults: bench/README.md.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 2)
# Callbacks wait on Redis, and waiting callbacks of one process share a group commit: more threads, bigger
# groups. Measured (bench/README.md, same run): 32 threads per process take ~20% more callbacks/s than 8,
# with a lower p99.
threads = int(os.environ.get("WEB_THREADS", "32"))
keepalive = int(
    os.environ.get("WEB_KEEPALIVE", "75")
)  # above Agora's 10 s and common PaaS routers' idle timeouts
timeout = 30
graceful_timeout = 20
# Agora retries a callback not answered in 10 s; requests here answer in milliseconds.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = None  # the receiver and the API log one structured line per request themselves
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Gunicorn >= 27 opens an admin socket at a fixed per-user path; one dyno needs none, and several local
# instances (tests, benchmarks) would contend for it.
control_socket_disable = True
