"""One settings object, read from the environment once.

Embedded defaults are ordinary default values: with no environment at all the
server runs on a SQLite file, an in-process Redis stand-in and an in-process
worker, with keys generated into the data directory on first run.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


class SettingsError(RuntimeError):
    """The environment does not describe a runnable configuration."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str | None
    public_url: str
    env: str
    smtp_url: str | None
    mail_from: str
    secret_key: bytes
    code_key: bytes
    allowed_origins: tuple[str, ...]
    payment_gateway: str
    db_pool_size: int
    outbox_sweep_seconds: float
    log_level: str
    queue_name: str
    job_timeout_seconds: int
    max_body_bytes: int = 1_048_576
    # Bounds on every wait for Redis and PostgreSQL (docs/resilience.md).
    redis_timeout_seconds: float = 1.5
    db_statement_timeout_seconds: float = 10.0
    db_pool_timeout_seconds: float = 5.0
    # How long a job's claim on its outbox row lasts without its worker's heartbeat (renewed every third of it).
    job_lease_seconds: float = 10.0
    # False: VOUCHSAFE_PUBLIC_URL is unset and public_url is a default that `serve` replaces by its own address.
    public_url_set: bool = True
    # Development and tests only: webhooks may go to plain http and to local addresses.
    webhooks_allow_insecure: bool = False
    log_format: str = "text"
    worker_metrics_port: int = 9108  # `vouchsafe worker`: /metrics, /healthz, /readyz; 0 = none
    worker_metrics_host: str = "127.0.0.1"
    # `only`: the allow-list mode, where only stored (trusted) documents run; `off`: any document.
    trusted_documents: str = "off"

    @property
    def trusted_documents_only(self) -> bool:
        return self.trusted_documents == "only"

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def embedded_redis(self) -> bool:
        """No REDIS_URL: the in-process stand-in and an in-process worker."""
        return self.redis_url is None

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"


def _decode_key(raw: str, source: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except ValueError as exc:
        raise SettingsError(f"{source} must be url-safe base64") from exc
    if len(key) < 32:
        raise SettingsError(f"{source} must decode to at least 32 bytes")
    return key


def _key(env: Mapping[str, str], name: str, data_dir: Path, production: bool) -> bytes:
    """A 32-byte key from the environment, or generated once into the data dir."""
    raw = env.get(name)
    if raw:
        return _decode_key(raw, name)
    if production:
        raise SettingsError(f"{name} is required when VOUCHSAFE_ENV=production")
    path = data_dir / "keys" / name.lower()
    if path.exists():
        return _decode_key(path.read_text().strip(), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    # Written once with owner-only rights: losing the code key makes every stored
    # voucher code unreadable, so it is never regenerated over an existing file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.urlsafe_b64encode(key).decode())
    return key


DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


def _public_url(env: Mapping[str, str], production: bool) -> str | None:
    """VOUCHSAFE_PUBLIC_URL without its trailing slash, or None when unset (refused in production)."""
    raw = env.get("VOUCHSAFE_PUBLIC_URL", "").strip().rstrip("/")
    if not raw:
        if production:
            raise SettingsError(
                "VOUCHSAFE_PUBLIC_URL is required when VOUCHSAFE_ENV=production: every link in PDFs, CSVs,"
                " e-mails and download URLs is built on it (e.g. https://vouchers.example.com)"
            )
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise SettingsError("VOUCHSAFE_PUBLIC_URL must be an http(s) URL such as https://vouchers.example.com")
    return raw


def _number(env: Mapping[str, str], name: str, default: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(env.get(name, default))
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number") from exc


def _positive(env: Mapping[str, str], name: str, default: str) -> int:
    value = int(_number(env, name, default, int))
    if value <= 0:
        raise SettingsError(f"{name} must be a positive number")
    return value


def _seconds(env: Mapping[str, str], name: str, default: str) -> float:
    value = float(_number(env, name, default, float))
    if not 0 < value < 3600:
        raise SettingsError(f"{name} must be a number of seconds above 0 and below 3600")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value not in ("", "0", "1", "false", "true"):
        raise SettingsError(f"{name} must be 1 or 0")
    return value in ("1", "true")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings; raise SettingsError when they cannot run."""
    env = os.environ if env is None else env
    app_env = env.get("VOUCHSAFE_ENV") or "development"
    if app_env not in ("development", "production"):
        raise SettingsError("VOUCHSAFE_ENV must be development or production")
    production = app_env == "production"
    data_dir = Path(env.get("VOUCHSAFE_DATA_DIR", "./var")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = env.get("DATABASE_URL") or f"sqlite://{data_dir / 'vouchsafe.sqlite3'}"
    origins = tuple(o.strip() for o in env.get("VOUCHSAFE_ALLOWED_ORIGINS", "").split(",") if o.strip())
    webhooks_insecure = _flag(env, "VOUCHSAFE_WEBHOOKS_ALLOW_INSECURE")
    if webhooks_insecure and production:
        raise SettingsError("VOUCHSAFE_WEBHOOKS_ALLOW_INSECURE is for development and tests, not production")
    log_format = env.get("VOUCHSAFE_LOG_FORMAT", "text").strip().lower() or "text"
    if log_format not in ("text", "json"):
        raise SettingsError("VOUCHSAFE_LOG_FORMAT must be text or json")
    metrics_port = int(_number(env, "VOUCHSAFE_WORKER_METRICS_PORT", "9108", int))
    if not 0 <= metrics_port <= 65535:
        raise SettingsError("VOUCHSAFE_WORKER_METRICS_PORT must be a port number (0: no endpoint)")
    trusted = (env.get("VOUCHSAFE_TRUSTED_DOCUMENTS") or "off").strip().lower()
    if trusted not in ("off", "only"):
        raise SettingsError("VOUCHSAFE_TRUSTED_DOCUMENTS must be off or only")
    gateway = env.get("VOUCHSAFE_PAYMENT_GATEWAY", "sandbox")
    if gateway not in ("sandbox",):
        raise SettingsError(f"unknown VOUCHSAFE_PAYMENT_GATEWAY {gateway!r}")
    secret_key = _key(env, "VOUCHSAFE_SECRET_KEY", data_dir, production)
    code_key = _key(env, "VOUCHSAFE_CODE_KEY", data_dir, production)
    public_url = _public_url(env, production)
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=env.get("REDIS_URL") or None,
        public_url=public_url or DEFAULT_PUBLIC_URL,
        public_url_set=public_url is not None,
        env=app_env,
        smtp_url=env.get("VOUCHSAFE_SMTP_URL") or None,
        mail_from=env.get("VOUCHSAFE_MAIL_FROM", "vouchsafe <no-reply@vouchsafe.invalid>"),
        secret_key=secret_key,
        code_key=code_key,
        allowed_origins=origins,
        payment_gateway=gateway,
        db_pool_size=int(_number(env, "VOUCHSAFE_DB_POOL_SIZE", "20", int)),
        outbox_sweep_seconds=float(_number(env, "VOUCHSAFE_OUTBOX_SWEEP_SECONDS", "5", float)),
        log_level=env.get("VOUCHSAFE_LOG_LEVEL", "INFO"),
        queue_name=env.get("VOUCHSAFE_QUEUE_NAME", "arq:queue"),
        job_timeout_seconds=int(_number(env, "VOUCHSAFE_JOB_TIMEOUT_SECONDS", "180", int)),
        max_body_bytes=_positive(env, "VOUCHSAFE_MAX_BODY_BYTES", "1048576"),
        webhooks_allow_insecure=webhooks_insecure,
        log_format=log_format,
        worker_metrics_port=metrics_port,
        worker_metrics_host=env.get("VOUCHSAFE_WORKER_METRICS_HOST", "127.0.0.1"),
        trusted_documents=trusted,
        redis_timeout_seconds=_seconds(env, "VOUCHSAFE_REDIS_TIMEOUT_SECONDS", "1.5"),
        db_statement_timeout_seconds=_seconds(env, "VOUCHSAFE_DB_STATEMENT_TIMEOUT_SECONDS", "10"),
        db_pool_timeout_seconds=_seconds(env, "VOUCHSAFE_DB_POOL_TIMEOUT_SECONDS", "5"),
        job_lease_seconds=_seconds(env, "VOUCHSAFE_JOB_LEASE_SECONDS", "10"),
    )
