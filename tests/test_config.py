"""Settings: parsing, validation messages naming the variable, secrets never printed."""

from __future__ import annotations

import pytest

from faxd.config import Secret, Settings
from faxd.errors import ConfigError

TOKEN = "0f2e6f7c-1d3a-4b7e-9c2d-5a6b7c8d9e0f"


def test_defaults_without_environment() -> None:
    """An empty environment gives the documented defaults and the sandbox."""
    s = Settings.from_env({})
    assert s.sipgate_base_url == "https://api.sipgate.com/v2"
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.default_region == "DE"
    assert s.max_pdf_bytes == 20 * 1024 * 1024
    assert s.max_pages == 200
    assert s.sandbox_wanted


def test_fractional_durations() -> None:
    """Durations are seconds and may be fractional."""
    s = Settings.from_env({"FAXD_POLL_INITIAL": "0.5", "FAXD_POLL_MAX": "2.25"})
    assert s.poll_initial_s == 0.5
    assert s.poll_max_s == 2.25


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FAXD_POLL_INITIAL", "soon"),
        ("FAXD_POLL_INITIAL", "-1"),
        ("FAXD_MAX_PAGES", "0"),
        ("FAXD_MAX_PDF_BYTES", "lots"),
        ("FAXD_FLATTEN_FORMS", "maybe"),
        ("FAXD_DEFAULT_REGION", "XX"),
        ("REDIS_URL", "http://localhost"),
        ("SIPGATE_BASE_URL", "ftp://x"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    """A bad value raises ConfigError whose message names the variable."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert name in str(info.value)
    assert info.value.code == "config_invalid"


def test_poll_max_below_initial_is_refused() -> None:
    """FAXD_POLL_MAX below FAXD_POLL_INITIAL is a configuration error."""
    with pytest.raises(ConfigError, match="FAXD_POLL_MAX"):
        Settings.from_env({"FAXD_POLL_INITIAL": "10", "FAXD_POLL_MAX": "5"})


def test_region_is_case_insensitive_and_none_means_none() -> None:
    """Region codes are case-insensitive; 'none' disables the default region."""
    assert Settings.from_env({"FAXD_DEFAULT_REGION": "at"}).default_region == "AT"
    assert Settings.from_env({"FAXD_DEFAULT_REGION": "None"}).default_region is None


def test_secrets_never_print() -> None:
    """repr, str, describe() and errors never show the token or API tokens."""
    s = Settings.from_env(
        {
            "SIPGATE_TOKEN_ID": "token-ABC123",
            "SIPGATE_TOKEN": TOKEN,
            "FAXD_API_TOKENS": "api-secret-1, api-secret-2",
            "REDIS_URL": "redis://:redispass@localhost:6379/0",
        }
    )
    for text in (repr(s), str(s), repr(s.describe()), str(s.sipgate_token)):
        assert TOKEN not in text
        assert "api-secret-1" not in text
        assert "redispass" not in text
    assert s.sipgate_token.reveal() == TOKEN
    assert [t.reveal() for t in s.api_tokens] == ["api-secret-1", "api-secret-2"]
    assert not s.sandbox_wanted


def test_secret_cannot_be_pickled() -> None:
    """Pickling would be a way around the mask."""
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret("x"))


def test_odd_credential_shape_only_warns() -> None:
    """A token id or token of another shape is a warning, never fatal."""
    with pytest.warns(UserWarning, match="SIPGATE_TOKEN_ID"):
        s = Settings.from_env(
            {"SIPGATE_TOKEN_ID": "proxy-user", "SIPGATE_TOKEN": TOKEN}
        )
    assert s.sipgate_token_id == "proxy-user"


def test_well_shaped_credentials_do_not_warn() -> None:
    """token- plus six characters and a UUID are accepted silently.

    (Warnings are errors.)
    """
    Settings.from_env({"SIPGATE_TOKEN_ID": "token-ABC123", "SIPGATE_TOKEN": TOKEN})


def test_token_id_without_token_is_refused() -> None:
    """A token id without its token cannot authenticate; say so at start."""
    with pytest.raises(ConfigError, match="SIPGATE_TOKEN"):
        Settings.from_env({"SIPGATE_TOKEN_ID": "token-ABC123"})


def test_token_alone_means_bearer() -> None:
    """SIPGATE_TOKEN without an id is an OAuth access token sent as Bearer."""
    s = Settings.from_env({"SIPGATE_TOKEN": "eyJhbGciOi"})
    assert s.uses_bearer and not s.sandbox_wanted
