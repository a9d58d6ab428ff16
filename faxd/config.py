"""The one settings object of faxd, read from the environment and validated at start.

Every entry point calls :meth:`Settings.from_env` once and passes the result down;
nothing else reads ``os.environ``. Secrets are :class:`Secret` values, which print as
``'***'`` in repr, str, logs and exceptions; only the HTTP client calls ``reveal()``.
Durations are seconds (fractions allowed) and say so in their names (``_s``).

Under systemd, secrets come as credentials (``LoadCredential=``): when the environment
names a ``CREDENTIALS_DIRECTORY``, each of :data:`CREDENTIAL_VARIABLES` is also looked
up there as a file named in lower case (``sipgate_token``) or exactly
(``SIPGATE_TOKEN``). A credential file that is present and not blank wins over the
variable: systemd sets the directory only for a unit that asked for those credentials,
while a variable may be a leftover inherited from a shell or an EnvironmentFile.
"""

from __future__ import annotations

import math
import os
import re
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from faxd.errors import ConfigError

__all__ = ["CREDENTIAL_VARIABLES", "DEFAULT_BASE_URL", "Secret", "Settings"]

DEFAULT_BASE_URL = "https://api.sipgate.com/v2"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
MIB = 1024 * 1024
_TOKEN_ID_SHAPE = re.compile(r"^token-[A-Za-z0-9]{6}$")

#: Variables that may also come from ``$CREDENTIALS_DIRECTORY`` (``LoadCredential=``).
CREDENTIAL_VARIABLES = (
    "SIPGATE_TOKEN",
    "SIPGATE_TOKEN_ID",
    "FAXD_API_TOKENS",
    "FAXD_CALLBACK_SECRET",
    "REDIS_URL",
)


class Secret:
    """A string that never prints.

    Call :meth:`reveal` where the value is really needed.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __reduce__(
        self,
    ) -> str | tuple[Any, ...]:  # pickling would be a way to print it
        raise TypeError("Secret values cannot be pickled")


@dataclass(frozen=True, slots=True)
class Settings:
    """All of faxd's configuration. Build it with :meth:`from_env`; it is immutable."""

    sipgate_base_url: str = DEFAULT_BASE_URL
    sipgate_token_id: str = ""
    sipgate_token: Secret = field(default_factory=lambda: Secret(""), repr=False)
    sipgate_faxline_id: str = ""
    redis_url: str = field(default=DEFAULT_REDIS_URL, repr=False)  # may hold a password
    hotfolder: Path | None = None
    default_region: str | None = "DE"
    api_tokens: tuple[Secret, ...] = field(default=(), repr=False)
    callback_secret: Secret = field(default_factory=lambda: Secret(""), repr=False)
    api_host: str = "127.0.0.1"
    api_port: int = 8025
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    max_pdf_bytes: int = 20 * MIB
    max_pages: int = 200
    flatten_forms: bool = False
    poll_initial_s: float = 5.0
    poll_max_s: float = 60.0
    poll_deadline_s: float = 3600.0
    per_page_estimate_s: float = 30.0
    max_transmissions: int = 3
    resend_delay_s: float = 300.0
    retry_max_s: float = 600.0
    redeliver_after_s: float = 60.0
    http_timeout_s: float = 30.0
    retention_s: float = 30 * 86400.0
    validate_timeout_s: float = 30.0
    validate_cpu_s: float = 20.0
    validate_memory_bytes: int = 1024 * MIB
    data_dir: Path = Path("var")
    log_format: str = "auto"
    log_level: str = "INFO"

    @property
    def sandbox_wanted(self) -> bool:
        """True when no sipgate credentials are set: faxd then uses its own sandbox."""
        return not self.sipgate_token

    @property
    def uses_bearer(self) -> bool:
        """SIPGATE_TOKEN without SIPGATE_TOKEN_ID is an OAuth access token (Bearer)."""
        return bool(self.sipgate_token) and not self.sipgate_token_id

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings.

        Raise :class:`ConfigError` naming the variable.
        """
        e = _with_credentials(dict(os.environ if env is None else env))
        r = _Reader(e)
        settings = cls(
            sipgate_base_url=r.url("SIPGATE_BASE_URL", DEFAULT_BASE_URL),
            sipgate_token_id=r.text("SIPGATE_TOKEN_ID", ""),
            sipgate_token=Secret(r.text("SIPGATE_TOKEN", "")),
            sipgate_faxline_id=r.text("SIPGATE_FAXLINE_ID", ""),
            redis_url=r.redis_url("REDIS_URL", DEFAULT_REDIS_URL),
            hotfolder=r.path("FAXD_HOTFOLDER"),
            default_region=r.region("FAXD_DEFAULT_REGION", "DE"),
            api_tokens=tuple(
                Secret(t.strip())
                for t in r.text("FAXD_API_TOKENS", "").split(",")
                if t.strip()
            ),
            callback_secret=Secret(r.text("FAXD_CALLBACK_SECRET", "")),
            api_host=r.text("FAXD_API_HOST", "127.0.0.1"),
            api_port=r.integer("FAXD_API_PORT", 8025, minimum=0),
            metrics_port=r.optional_integer("FAXD_METRICS_PORT", minimum=1),
            metrics_host=r.text("FAXD_METRICS_HOST", "127.0.0.1"),
            max_pdf_bytes=r.integer("FAXD_MAX_PDF_BYTES", 20 * MIB, minimum=1),
            max_pages=r.integer("FAXD_MAX_PAGES", 200, minimum=1),
            flatten_forms=r.boolean("FAXD_FLATTEN_FORMS", False),
            poll_initial_s=r.seconds("FAXD_POLL_INITIAL", 5.0),
            poll_max_s=r.seconds("FAXD_POLL_MAX", 60.0),
            poll_deadline_s=r.seconds("FAXD_POLL_DEADLINE", 3600.0),
            per_page_estimate_s=r.seconds("FAXD_PER_PAGE_ESTIMATE", 30.0, zero=True),
            max_transmissions=r.integer("FAXD_MAX_TRANSMISSIONS", 3, minimum=1),
            resend_delay_s=r.seconds("FAXD_RESEND_DELAY", 300.0, zero=True),
            retry_max_s=r.seconds("FAXD_RETRY_MAX", 600.0),
            redeliver_after_s=r.seconds("FAXD_REDELIVER_AFTER", 60.0),
            http_timeout_s=r.seconds("FAXD_HTTP_TIMEOUT", 30.0),
            retention_s=r.seconds("FAXD_RETENTION", 30 * 86400.0),
            validate_timeout_s=r.seconds("FAXD_VALIDATE_TIMEOUT", 30.0),
            validate_cpu_s=r.seconds("FAXD_VALIDATE_CPU", 20.0),
            validate_memory_bytes=r.integer(
                "FAXD_VALIDATE_MEMORY_BYTES", 1024 * MIB, minimum=64 * MIB
            ),
            data_dir=r.path("FAXD_DATA_DIR") or Path("var"),
            log_format=r.choice("FAXD_LOG_FORMAT", "auto", ("auto", "json", "console")),
            log_level=r.choice(
                "FAXD_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")
            ),
        )
        if settings.poll_max_s < settings.poll_initial_s:
            raise ConfigError(
                "FAXD_POLL_MAX must be at least FAXD_POLL_INITIAL "
                f"({settings.poll_max_s:g} < {settings.poll_initial_s:g}); raise it."
            )
        if settings.sipgate_token_id and not settings.sipgate_token:
            raise ConfigError(
                "SIPGATE_TOKEN_ID is set but SIPGATE_TOKEN is not: set both for a "
                "personal access token, SIPGATE_TOKEN alone for an OAuth bearer token, "
                "or neither to use the built-in sandbox."
            )
        if settings.sipgate_token_id:
            _warn_about_credential_shape(settings)
        return settings

    def describe(self) -> dict[str, object]:
        """The settings as plain data, secrets masked: safe to log or print."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = "***" if value else ""
            elif isinstance(value, tuple) and value and isinstance(value[0], Secret):
                value = f"{len(value)} token(s)"
            elif f.name == "redis_url":
                value = _mask_url_password(str(value))
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out


def _warn_about_credential_shape(s: Settings) -> None:
    # Only a warning: proxies and test servers use other shapes (see issue 3).
    if not _TOKEN_ID_SHAPE.match(s.sipgate_token_id):
        warnings.warn(
            "SIPGATE_TOKEN_ID does not look like a sipgate personal access token id "
            "('token-' and 6 letters or digits); using it anyway.",
            stacklevel=3,
        )
    try:
        uuid.UUID(s.sipgate_token.reveal())
    except ValueError:
        warnings.warn(
            "SIPGATE_TOKEN does not look like a sipgate token (a UUID); "
            "using it anyway.",
            stacklevel=3,
        )


def _with_credentials(env: dict[str, str]) -> dict[str, str]:
    """``env`` with each credential file in ``$CREDENTIALS_DIRECTORY`` replacing its
    variable (see the module docstring). Errors name the file, never its content."""
    directory = env.get("CREDENTIALS_DIRECTORY", "").strip()
    if not directory:
        return env
    for name in CREDENTIAL_VARIABLES:
        for candidate in (name.lower(), name):
            path = Path(directory) / candidate
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ConfigError(
                    f"Cannot read the credential {candidate} in CREDENTIALS_DIRECTORY "
                    f"({exc.strerror}); check LoadCredential= and the file's owner."
                ) from None
            try:
                value = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise ConfigError(
                    f"The credential {candidate} in CREDENTIALS_DIRECTORY is not UTF-8 "
                    f"text; write {name} into it as plain text."
                ) from None
            if value.strip():
                env[name] = value
                break
    return env


def _mask_url_password(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


class _Reader:
    """Parses one variable at a time; every error names the variable, never a secret."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def url(self, name: str, default: str) -> str:
        value = self._raw(name) or default
        if not re.match(r"^https?://[^/\s]+", value):
            raise ConfigError(f"{name} must be an http(s) URL, got {value!r}.")
        return value.rstrip("/")

    def redis_url(self, name: str, default: str) -> str:
        value = self._raw(name) or default
        if not re.match(r"^(redis|rediss|unix)://", value):
            raise ConfigError(
                f"{name} must start with redis://, rediss:// or unix://, "
                f"got {_mask_url_password(value)!r}."
            )
        return value

    def path(self, name: str) -> Path | None:
        value = self._raw(name)
        return Path(value) if value else None

    def region(self, name: str, default: str) -> str | None:
        value = (self._raw(name) or default).upper()
        if value == "NONE":
            return None
        import phonenumbers  # local: only config validation needs the region list

        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError(
                f"{name} must be a two-letter region code such as DE or 'none', "
                f"got {value!r}."
            )
        return value

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = int(value.replace("_", ""))
        except ValueError:
            raise ConfigError(
                f"{name} must be a whole number, got {value!r}."
            ) from None
        if number < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {number}.")
        return number

    def optional_integer(self, name: str, *, minimum: int) -> int | None:
        if self._raw(name) is None:
            return None
        return self.integer(name, minimum, minimum=minimum)

    def seconds(self, name: str, default: float, *, zero: bool = False) -> float:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(
                f"{name} must be a number of seconds (fractions allowed), "
                f"got {value!r}."
            ) from None
        if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
            raise ConfigError(
                f"{name} must be a positive number of seconds, got {value!r}."
            )
        return number

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self._raw(name) or default
        for option in allowed:
            if value.lower() == option.lower():
                return option
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}.")

    def boolean(self, name: str, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(
            f"{name} must be 1/0, true/false, yes/no or on/off, got {value!r}."
        )
