"""Settings module for the ``rq worker`` command (``rq worker -c workers.rq_config``).

RQ reads the upper-case names below. ``REDIS_URL`` comes from the validated settings, so a missing or
malformed variable stops the worker at start-up with a message that names it.
"""

from __future__ import annotations

import logging

from workers.core import schema
from workers.core.config import current_settings
from workers.core.logs import configure_logging

_settings = current_settings()
configure_logging(_settings.log_level)
logging.getLogger(__name__).info("worker settings loaded", extra={"settings": repr(_settings)})

REDIS_URL = _settings.redis_url
QUEUES = list(schema.QUEUES)
