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

from app.secret_strength import PLACEHOLDERS, secret_problem


class SettingsError(RuntimeError):
    """The configuration is unsafe or inconsistent; the message says which variable to set."""


class Settings(BaseSettings):
    """prefloop's configuration. Read once per process through `get_settings()`."""

    model_config = SettingsConfigDict(env_prefix="PREFLOOP_", env_file=".env", extra="ignore")

    # Production unless told otherwise: `make run`, the test suite and the demo set dev or test themselves,
    # so a deployment that forgets the variable still refuses a missing secret and marks cookies Secure.
    env: Literal["dev", "test", "prod"] = "prod"
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
    # Outside dev, /metrics is for admins only, and for `Authorization: Bearer <token>` once this is set.
    metrics_token: str = ""
    log_level: str = "info"
    # `json` (one object per line), `text` (readable), or `auto`: text in dev/test, JSON in production (app.logs).
    log_format: Literal["auto", "json", "text"] = "auto"

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
        """The signing secret; outside dev a missing or weak one is refused (app.secret_strength has the rule).

        In dev mode without one, a random secret is generated once and kept in the data directory
        (mode 0600), so sessions survive restarts and no secret is ever built into the code.
        """
        problem = secret_problem(self.secret_key)
        if problem is None:
            return self.secret_key
        if self.is_dev:
            # A weak secret set on purpose is kept in dev (tests share one with their subprocesses).
            usable = self.secret_key.strip().lower() not in PLACEHOLDERS and len(self.secret_key) >= 16
            return self.secret_key if usable else _dev_secret(self.data_dir)
        raise SettingsError(
            f"PREFLOOP_SECRET_KEY is {problem}; set a long random value, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` (or PREFLOOP_ENV=dev on your own machine)"
        )

    def validate_for_serving(self) -> None:
        """Raise SettingsError when the process must not start with this configuration."""
        self.effective_secret()
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(
                f"PREFLOOP_BASE_URL={self.base_url!r} is not an absolute http(s) URL; set the address users open, "
                "e.g. https://prefloop.example.org"
            )
        problem = secret_problem(self.metrics_token) if self.metrics_token else None
        if problem and not self.is_dev:
            raise SettingsError(f"PREFLOOP_METRICS_TOKEN is {problem}; set a long random value or leave it unset "
                                "(then only admins reach /metrics).")


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


def prometheus_multiproc_dir() -> str:
    """prometheus_client's own variable, which it reads when imported: when set, every web process writes its
    metrics into that folder and /metrics adds them up (docs/configuration.md)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache to change them)."""
    return Settings()
