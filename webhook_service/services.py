"""The per-app objects views need (settings, Redis client, inbox), stored on the Flask app, not globally."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app

from workers.core.config import Settings
from workers.ncs import Inbox

EXTENSION_KEY = "agora_recording"


@dataclass(frozen=True)
class Services:
    settings: Settings
    redis: redis.Redis
    inbox: Inbox


def get_services() -> Services:
    """The services of the app handling the current request."""
    services: Services = current_app.extensions[EXTENSION_KEY]
    return services
