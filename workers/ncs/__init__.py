"""Agora's notification callbacks (NCS): the envelope, the inbox that makes an accepted callback durable, the
drain that applies callbacks to their sessions, and the session reducer and store.

This package's face, for the web process: what it imports from here, it imports from this module.
"""

from workers.ncs.envelope import MAX_PAYLOAD_DEPTH, decode_envelope
from workers.ncs.inbox import Inbox, install_drain_templates
from workers.ncs.store import SessionSummary, read_session, read_summary

__all__ = [
    "MAX_PAYLOAD_DEPTH",
    "Inbox",
    "SessionSummary",
    "decode_envelope",
    "install_drain_templates",
    "read_session",
    "read_summary",
]
