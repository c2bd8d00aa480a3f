"""Agora's notification callbacks (NCS): the envelope, the inbox that makes an accepted callback durable, the
drain that applies callbacks to their sessions, and the session reducer and store."""
