"""The http:// backend's options: parsed once into HttpOptions, the token kept out of sight."""

from __future__ import annotations

import pytest

from relaystore.backends import parse_url
from relaystore.backends._policy import describe
from relaystore.backends.http import HttpOptions
from relaystore.errors import InvalidInput


def test_the_url_becomes_typed_options_without_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAYSTORE_TOKEN", raising=False)
    options = parse_url("https://h.example:8443/t/acme/?token=s3cret&timeout=5")
    assert isinstance(options, HttpOptions)
    assert options.scheme == "https"
    assert options.base == "https://h.example:8443/t/acme"
    assert "s3cret" not in options.url and "timeout=5" in options.url
    assert options.token is not None and options.token.get_secret_value() == "s3cret"
    assert (options.timeout, options.max_connections) == (5.0, 32)
    assert "s3cret" not in str(describe(options)) and "s3cret" not in repr(options)


def test_keywords_win_and_the_environment_gives_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYSTORE_TOKEN", "from-env")
    options = parse_url("http://127.0.0.1:1?timeout=5", timeout=2, max_connections=4)
    assert isinstance(options, HttpOptions)
    assert (options.timeout, options.max_connections) == (2.0, 4)
    assert options.token is not None and options.token.get_secret_value() == "from-env"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http:///no-host", "names no host"),
        ("http://h:1?colour=red", "unknown http store option"),
        ("http://h:1?timeout=0", "timeout must be above 0"),
        ("http://h:1?timeout=soon", "timeout must be a float"),
        ("http://h:1?max_connections=0", "max_connections must be at least 1"),
    ],
)
def test_bad_urls_and_options_are_invalid_input(url: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_url(url)
