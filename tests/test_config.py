"""Configuration is read in one place and says everything that is wrong at once."""

import os

import pytest

from integrations.config import ConfigError, load_config


def test_defaults():
    config = load_config({}, dotenv=False)
    assert config.database_path == "attendance.db"
    assert config.zoom_api_base_url == "https://api.zoom.us/v2"
    assert config.zoom_oauth_token_url == "https://zoom.us/oauth/token"
    assert config.webhook_tolerance_seconds == 300
    assert config.port == 8000
    assert config.webhook_secret_token is None


def test_database_url_forms():
    assert load_config({"DATABASE_URL": "sqlite:///data/a.db"}, dotenv=False).database_path == "data/a.db"
    assert load_config({"DATABASE_URL": "sqlite:////var/lib/a.db"}, dotenv=False).database_path == "/var/lib/a.db"


def test_every_bad_value_is_named_at_once():
    with pytest.raises(ConfigError) as e:
        load_config({"DATABASE_URL": "mysql://x", "PORT": "eighty", "WEBHOOK_TOLERANCE_SECONDS": "-1"}, dotenv=False)
    message = str(e.value)
    assert "DATABASE_URL" in message and "PORT" in message and "WEBHOOK_TOLERANCE_SECONDS" in message


def test_missing_zoom_credentials_are_named_together():
    config = load_config({"ZOOM_CLIENT_ID": "abc"}, dotenv=False)
    with pytest.raises(ConfigError) as e:
        config.require_zoom_api()
    assert "ZOOM_ACCOUNT_ID" in str(e.value) and "ZOOM_CLIENT_SECRET" in str(e.value)
    assert "ZOOM_CLIENT_ID," not in str(e.value)


def test_dotenv_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("PORT=9100\nAPI_TOKEN=from-file-0123456789-0123456789-0123\n")
    monkeypatch.chdir(tmp_path)
    # load_dotenv writes into os.environ: give it a private copy so nothing leaks.
    environ = {k: v for k, v in os.environ.items() if k not in ("PORT", "API_TOKEN")}
    environ["API_TOKEN"] = "from-env-0123456789-0123456789-01234"
    monkeypatch.setattr(os, "environ", environ)
    config = load_config()
    assert config.port == 9100
    assert config.api_token == "from-env-0123456789-0123456789-01234"


def test_secrets_stay_out_of_repr():
    config = load_config(
        {
            "ZOOM_WEBHOOK_SECRET_TOKEN": "s3cret-hook",
            "ZOOM_CLIENT_SECRET": "s3cret-client",
            "API_TOKEN": "s3cret-api-0123456789-0123456789-0123",
        },
        dotenv=False,
    )
    assert "s3cret" not in repr(config)
