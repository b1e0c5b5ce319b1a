"""Verified agent tokens are remembered until they expire (server/token_cache.py)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from relaystore.errors import Unauthorized
from relaystore.server.tokens import issue_token, verify_token

KEY = "k" * 48
ADMIN = "a" * 48


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens jwt.decode is asked to check from now on."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return seen


def test_a_token_is_verified_once_then_remembered(decodes: list[str]) -> None:
    token = issue_token(KEY, task="cache-t", attempt=0, producer="p", audience="store-a")
    first = verify_token(token, admin_token=ADMIN, signing_key=KEY, audience="store-a")
    again = verify_token(token, admin_token=ADMIN, signing_key=KEY, audience="store-a")
    assert first == again and first.task == "cache-t"
    assert decodes == [token]


def test_a_remembered_token_still_expires_and_keeps_its_audience(decodes: list[str]) -> None:
    token = issue_token(KEY, task="cache-e", attempt=0, producer="p", audience="store-a", ttl=1)
    verify_token(token, admin_token=ADMIN, signing_key=KEY, audience="store-a")
    with pytest.raises(Unauthorized, match="another store"):  # not answered from the cache
        verify_token(token, admin_token=ADMIN, signing_key=KEY, audience="store-b")
    time.sleep(1.1)
    with pytest.raises(Unauthorized, match="expired"):
        verify_token(token, admin_token=ADMIN, signing_key=KEY, audience="store-a")
    assert decodes == [token] * 3
