"""The one place that reads the environment: every setting of prefloop, prefixed `PREFLOOP_`."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Secrets that must never protect a real deployment: the empty string and the placeholders people copy.
_UNSAFE_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "please-change-me"})


class SettingsError(RuntimeError):
    """The configuration is unsafe or inconsistent; the message says which variable to set."""


class Settings(BaseSettings):
    """prefloop's configuration. Read once per process through `get_settings()`."""

    model_config = SettingsConfigDict(env_prefix="PREFLOOP_", env_file=".env", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    database_url: str = ""
    secret_key: str = ""
    data_dir: Path = Path("data")
    checkpoint_dir: Path = Path("")
    max_upload_mb: int = Field(default=200, ge=1)
    max_request_kb: int = Field(default=1024, ge=16)
    session_hours: int = Field(default=12, ge=1)
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_minutes: int = Field(default=15, ge=1)
    # Login attempts answered before 429 (app.auth.throttle): per client address, then per e-mail address.
    # An office behind one NAT address logs in together at nine, hence the generous per-address burst.
    login_ip_burst: int = Field(default=30, ge=1)
    login_ip_per_minute: float = Field(default=30.0, gt=0)
    login_account_burst: int = Field(default=10, ge=1)
    login_account_per_minute: float = Field(default=5.0, gt=0)
    # The address users open. Its scheme decides the cookies' Secure flag, its host the allowed Host header.
    base_url: str = "http://127.0.0.1:8000"
    # More Host names to accept, comma-separated ("*": any); loopback names are always accepted (probes).
    allowed_hosts: str = ""
    # Outside dev, /metrics answers 404 until this is set, then wants `Authorization: Bearer <token>`.
    metrics_token: str = ""
    log_level: str = "info"

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'prefloop.db').as_posix()}"
        if not str(self.checkpoint_dir) or str(self.checkpoint_dir) == ".":
            self.checkpoint_dir = self.data_dir / "checkpoints"
        return self

    @property
    def is_dev(self) -> bool:
        return self.env in ("dev", "test")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def cookies_secure(self) -> bool:
        """Cookies are `Secure` exactly when users reach the app over https (behind a TLS proxy, normally)."""
        return urlsplit(self.base_url).scheme == "https"

    @property
    def public_origin(self) -> str:
        """`scheme://host[:port]` of the base URL, for messages that tell people where to go."""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def trusted_hosts(self) -> list[str]:
        """Host header values the app answers: the base URL's host, loopback (health probes inside the host or
        container), PREFLOOP_ALLOWED_HOSTS, and in dev/test the test client's `testserver`."""
        extra = [host.strip() for host in self.allowed_hosts.split(",") if host.strip()]
        if "*" in extra:
            return ["*"]
        hosts = [urlsplit(self.base_url).hostname or "", "localhost", "127.0.0.1", *extra]
        if self.is_dev:
            hosts.append("testserver")
        return list(dict.fromkeys(host.lower() for host in hosts if host))

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    def effective_secret(self) -> str:
        """The signing secret; outside dev an unset or placeholder secret is refused.

        In dev mode without one, a random secret is generated once and kept in the data directory
        (mode 0600), so sessions survive restarts and no secret is ever built into the code.
        """
        if self.secret_key.strip().lower() in _UNSAFE_SECRETS or len(self.secret_key) < 16:
            if self.is_dev:
                return _dev_secret(self.data_dir)
            raise SettingsError(
                "PREFLOOP_SECRET_KEY is empty, too short (< 16 characters) or a placeholder; "
                "set a long random value (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)."
            )
        return self.secret_key

    def validate_for_serving(self) -> None:
        """Raise SettingsError when the process must not start with this configuration."""
        self.effective_secret()
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(
                f"PREFLOOP_BASE_URL={self.base_url!r} is not an absolute http(s) URL; set the address users open, "
                "e.g. https://prefloop.example.org"
            )
        if self.metrics_token and not self.is_dev and (
            self.metrics_token.strip().lower() in _UNSAFE_SECRETS or len(self.metrics_token) < 16
        ):
            raise SettingsError("PREFLOOP_METRICS_TOKEN is too short (< 16 characters) or a placeholder; "
                                "set a long random value or leave it unset (then /metrics answers 404).")


def _dev_secret(data_dir: Path) -> str:
    path = data_dir / "dev-secret-key"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()  # another process (web beside worker) made it first
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache to change them)."""
    return Settings()
