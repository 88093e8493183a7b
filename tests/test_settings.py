"""Settings from explicit environments: embedded defaults, external services, production's demands."""

from __future__ import annotations

import base64
import secrets
import stat
from pathlib import Path

import pytest

from settings import SettingsError, load_settings


def new_key(size: int = 32) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(size)).decode()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


class TestEmbeddedDefaults:
    def test_empty_env_runs_on_sqlite_in_the_data_dir_with_embedded_redis(self, data_dir: Path) -> None:
        settings = load_settings({"VOUCHSAFE_DATA_DIR": str(data_dir)})
        assert settings.data_dir == data_dir.resolve()
        assert settings.database_url == f"sqlite://{data_dir.resolve() / 'vouchsafe.sqlite3'}"
        assert settings.uses_sqlite
        assert settings.redis_url is None
        assert settings.embedded_redis
        assert not settings.production

    def test_keys_are_generated_into_the_data_dir_and_kept(self, data_dir: Path) -> None:
        # given
        env = {"VOUCHSAFE_DATA_DIR": str(data_dir)}
        # when
        first = load_settings(env)
        second = load_settings(env)
        # then
        secret_file = data_dir / "keys" / "vouchsafe_secret_key"
        code_file = data_dir / "keys" / "vouchsafe_code_key"
        assert base64.urlsafe_b64decode(secret_file.read_text()) == first.secret_key
        assert base64.urlsafe_b64decode(code_file.read_text()) == first.code_key
        assert len(first.secret_key) == len(first.code_key) == 32
        assert first.secret_key != first.code_key
        assert (second.secret_key, second.code_key) == (first.secret_key, first.code_key)
        assert stat.S_IMODE(secret_file.stat().st_mode) == stat.S_IMODE(code_file.stat().st_mode) == 0o600

    def test_other_data_dirs_get_other_keys(self, tmp_path: Path) -> None:
        one = load_settings({"VOUCHSAFE_DATA_DIR": str(tmp_path / "one")})
        two = load_settings({"VOUCHSAFE_DATA_DIR": str(tmp_path / "two")})
        assert one.secret_key != two.secret_key
        assert one.code_key != two.code_key


class TestExternalServices:
    def test_database_and_redis_urls_replace_the_embedded_ones(self, data_dir: Path) -> None:
        settings = load_settings(
            {
                "VOUCHSAFE_DATA_DIR": str(data_dir),
                "DATABASE_URL": "postgres://vouchsafe:pw@db.internal:5432/vouchsafe",
                "REDIS_URL": "redis://cache.internal:6379/0",
            }
        )
        assert settings.database_url == "postgres://vouchsafe:pw@db.internal:5432/vouchsafe"
        assert not settings.uses_sqlite
        assert settings.redis_url == "redis://cache.internal:6379/0"
        assert not settings.embedded_redis


class TestProduction:
    def test_keys_are_required(self, data_dir: Path) -> None:
        base = {"VOUCHSAFE_DATA_DIR": str(data_dir), "VOUCHSAFE_ENV": "production"}
        cases = {
            "no keys": {},
            "no code key": {"VOUCHSAFE_SECRET_KEY": new_key()},
            "no secret key": {"VOUCHSAFE_CODE_KEY": new_key()},
        }
        for case, keys in cases.items():
            with pytest.raises(SettingsError, match="required when VOUCHSAFE_ENV=production"):
                load_settings({**base, **keys})
            assert not (data_dir / "keys").exists(), case

    def test_loads_with_both_keys(self, data_dir: Path) -> None:
        secret_key, code_key = new_key(), new_key()
        settings = load_settings(
            {
                "VOUCHSAFE_DATA_DIR": str(data_dir),
                "VOUCHSAFE_ENV": "production",
                "VOUCHSAFE_SECRET_KEY": secret_key,
                "VOUCHSAFE_CODE_KEY": code_key,
                "VOUCHSAFE_PUBLIC_URL": "https://vouchers.example.com/",
            }
        )
        assert (settings.public_url, settings.public_url_set) == ("https://vouchers.example.com", True)
        assert settings.production
        assert settings.secret_key == base64.urlsafe_b64decode(secret_key)
        assert settings.code_key == base64.urlsafe_b64decode(code_key)
        assert not (data_dir / "keys").exists()

    def test_keys_without_padding_load(self, data_dir: Path) -> None:
        secret_key = new_key()
        settings = load_settings({"VOUCHSAFE_DATA_DIR": str(data_dir), "VOUCHSAFE_SECRET_KEY": secret_key.rstrip("=")})
        assert settings.secret_key == base64.urlsafe_b64decode(secret_key)


class TestPublicUrl:
    def test_unset_is_the_default_that_serve_replaces(self, data_dir: Path) -> None:
        settings = load_settings({"VOUCHSAFE_DATA_DIR": str(data_dir)})
        assert (settings.public_url, settings.public_url_set) == ("http://127.0.0.1:8000", False)

    def test_production_requires_it(self, data_dir: Path) -> None:
        keys = {"VOUCHSAFE_SECRET_KEY": new_key(), "VOUCHSAFE_CODE_KEY": new_key()}
        env = {"VOUCHSAFE_DATA_DIR": str(data_dir), "VOUCHSAFE_ENV": "production", **keys}
        for unset in ({}, {"VOUCHSAFE_PUBLIC_URL": "  "}):
            with pytest.raises(SettingsError, match="VOUCHSAFE_PUBLIC_URL is required when VOUCHSAFE_ENV=production"):
                load_settings({**env, **unset})

    def test_not_a_url_is_refused(self, data_dir: Path) -> None:
        for value in ("vouchers.example.com", "ftp://vouchers.example.com", "https://", "https://a.example/?x=1"):
            with pytest.raises(SettingsError, match="VOUCHSAFE_PUBLIC_URL must be an http"):
                load_settings({"VOUCHSAFE_DATA_DIR": str(data_dir), "VOUCHSAFE_PUBLIC_URL": value})


class TestRefused:
    def test_a_too_short_key(self, data_dir: Path) -> None:
        for name in ("VOUCHSAFE_SECRET_KEY", "VOUCHSAFE_CODE_KEY"):
            with pytest.raises(SettingsError, match=f"{name} must decode to at least 32 bytes"):
                load_settings({"VOUCHSAFE_DATA_DIR": str(data_dir), name: new_key(16)})

    def test_a_too_short_key_in_production_too(self, data_dir: Path) -> None:
        env = {
            "VOUCHSAFE_DATA_DIR": str(data_dir),
            "VOUCHSAFE_ENV": "production",
            "VOUCHSAFE_SECRET_KEY": new_key(31),
            "VOUCHSAFE_CODE_KEY": new_key(),
        }
        with pytest.raises(SettingsError, match="VOUCHSAFE_SECRET_KEY must decode to at least 32 bytes"):
            load_settings(env)

    def test_an_unknown_env(self, data_dir: Path) -> None:
        for value in ("staging", "Production"):
            with pytest.raises(SettingsError, match="VOUCHSAFE_ENV must be development or production"):
                load_settings({"VOUCHSAFE_DATA_DIR": str(data_dir), "VOUCHSAFE_ENV": value})


class TestOperations:
    def test_log_format_and_worker_endpoint_defaults(self, data_dir: Path) -> None:
        settings = load_settings({"VOUCHSAFE_DATA_DIR": str(data_dir)})
        assert (settings.log_format, settings.worker_metrics_port, settings.worker_metrics_host) == (
            "text",
            9108,
            "127.0.0.1",
        )
        chosen = load_settings(
            {"VOUCHSAFE_DATA_DIR": str(data_dir), "VOUCHSAFE_LOG_FORMAT": "JSON", "VOUCHSAFE_WORKER_METRICS_PORT": "0"}
        )
        assert (chosen.log_format, chosen.worker_metrics_port) == ("json", 0)

    def test_bad_values_are_refused(self, data_dir: Path) -> None:
        with pytest.raises(SettingsError, match="VOUCHSAFE_LOG_FORMAT must be text or json"):
            load_settings({"VOUCHSAFE_DATA_DIR": str(data_dir), "VOUCHSAFE_LOG_FORMAT": "xml"})
        for port in ("70000", "-1", "http"):
            with pytest.raises(SettingsError, match="VOUCHSAFE_WORKER_METRICS_PORT"):
                load_settings({"VOUCHSAFE_DATA_DIR": str(data_dir), "VOUCHSAFE_WORKER_METRICS_PORT": port})


class TestTrustedDocuments:
    def test_off_by_default_only_on_request(self, data_dir: Path) -> None:
        assert not load_settings({"VOUCHSAFE_DATA_DIR": str(data_dir)}).trusted_documents_only
        only = load_settings({"VOUCHSAFE_DATA_DIR": str(data_dir), "VOUCHSAFE_TRUSTED_DOCUMENTS": "only"})
        assert only.trusted_documents_only

    def test_other_values_are_refused(self, data_dir: Path) -> None:
        with pytest.raises(SettingsError, match="VOUCHSAFE_TRUSTED_DOCUMENTS"):
            load_settings({"VOUCHSAFE_DATA_DIR": str(data_dir), "VOUCHSAFE_TRUSTED_DOCUMENTS": "yes"})
