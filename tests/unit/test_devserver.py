"""``make run``'s rule (webhook_service/devserver.py, issue 10): no well-known dev defaults next to real Agora
credentials. The process itself: ``tests/e2e/test_devserver.py``."""

from __future__ import annotations

import pytest

from webhook_service import devserver

REAL = {
    "AGORA_APP_ID": "app",
    "AGORA_CUSTOMER_ID": "real-customer-id",
    "AGORA_CUSTOMER_SECRET": "real-secret",
}
OWN_TOKEN = "my-own-api-token-0123456789"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({}, ("API_TOKENS", "AGORA_NCS_SECRETS")),
        ({"API_TOKENS": OWN_TOKEN}, ("AGORA_NCS_SECRETS",)),
        ({"AGORA_NCS_SECRETS": "my-ncs-secret"}, ("API_TOKENS",)),
        ({"API_TOKENS": f"{OWN_TOKEN},dev-token", "AGORA_NCS_SECRETS": "my-ncs-secret"}, ("API_TOKENS",)),
        ({"API_TOKENS": OWN_TOKEN, "AGORA_NCS_SECRETS": "dev-ncs-secret"}, ("AGORA_NCS_SECRETS",)),
    ],
)
def test_dev_defaults_refused_with_real_credentials(extra: dict[str, str], named: tuple[str, ...]) -> None:
    message = devserver.dev_defaults_refused({**REAL, **extra})
    assert message is not None
    for name in named:
        assert f"{name} " in message
    for name in {"API_TOKENS", "AGORA_NCS_SECRETS"} - set(named):
        assert f"  {name} " not in message


def test_dev_defaults_fine_without_real_credentials_or_with_own_secrets() -> None:
    assert devserver.dev_defaults_refused({}) is None
    assert devserver.dev_defaults_refused({"API_TOKENS": "dev-token"}) is None
    own = {**REAL, "API_TOKENS": OWN_TOKEN, "AGORA_NCS_SECRETS": "my-ncs-secret"}
    assert devserver.dev_defaults_refused(own) is None
