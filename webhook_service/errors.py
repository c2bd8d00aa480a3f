"""The exceptions of the ``webhook_service`` package, under one root::

    WebError                 any failure this package raises on purpose
    └── SignatureError       an NCS callback's signature header is missing, malformed or wrong

They never carry a secret, a signature or a body. The HTTP edge translates them (see ``receiver``).
"""

from __future__ import annotations


class WebError(Exception):
    """Root of every error raised on purpose by this package."""


class SignatureError(WebError):
    """The callback is not proven to come from Agora."""
