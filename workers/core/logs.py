"""One JSON object per log line on stdout, with the ids passed as ``extra=`` (notice_id, sid, partition...).

Plain ``logging`` underneath, so tests read the same fields from ``caplog`` records. Every line is redacted
by rule (:mod:`workers.core.redact`) before it is written: the message, every ``extra`` field (an extra named like a
credential is masked whole) and the traceback. So a URL with a password, a stream key or a token that reaches
a log call by accident (an error echoing a request, a ``repr``) still never reaches the log.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

import msgspec

from workers.core.redact import redact_field, redact_text

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_ENCODER = msgspec.json.Encoder(enc_hook=repr)


def _plain(value: Any) -> Any:
    """``value`` as plain JSON (anything else through its ``repr``), so redaction sees every string."""
    try:
        return msgspec.json.decode(_ENCODER.encode(value))
    except Exception:  # a log line must never fail: show the repr (redacted by the caller)
        try:
            return repr(value)
        except Exception:
            return f"<{type(value).__name__}>"


class JsonFormatter(logging.Formatter):
    """Formats a record as one redacted JSON object: time, level, logger, message, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: keep the template rather than lose the line
            message = str(record.msg)
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(message),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = redact_field(name, _plain(value))
        if record.exc_info:
            line["exc"] = redact_text(self.formatException(record.exc_info))
        return _ENCODER.encode(line).decode("utf-8", "replace")


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Send this package's and the web service's logs to ``stream`` (default stdout) as redacted JSON lines."""
    handler = logging.StreamHandler(sys.stdout if stream is None else stream)
    handler.setFormatter(JsonFormatter())
    for name in ("workers", "webhook_service"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = True
