"""One JSON object per log line on stdout, with the ids passed as ``extra=`` (notice_id, sid, partition...).

Plain ``logging`` underneath, so tests read the same fields from ``caplog`` records. Callers never pass
secrets or signatures; ``Settings`` keeps secrets out of its repr.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import msgspec

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_ENCODER = msgspec.json.Encoder(enc_hook=repr)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _ENCODER.encode(line).decode("utf-8", "replace")


def configure_logging(level: str = "INFO") -> None:
    """Send this package's and the web service's logs to stdout as JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    for name in ("workers", "webhook_service"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = True
