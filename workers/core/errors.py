"""The exceptions of the ``workers`` package, under one root::

ServiceError                 any failure this package raises on purpose
├── ConfigError              an environment variable is missing or malformed (names the variable)
├── EventError               an NCS callback body is not a valid envelope (says which field)
└── StoreUnavailableError    Redis did not take a write or answer a read
"""

from __future__ import annotations


class ServiceError(Exception):
    """Root of every error raised on purpose by this package."""


class ConfigError(ServiceError):
    """A setting is missing or malformed; the message names the environment variable."""


class EventError(ServiceError):
    """An NCS callback body is not a valid envelope; the message says which field and why."""


class StoreUnavailableError(ServiceError):
    """Redis could not be reached or did not complete a command in time."""
