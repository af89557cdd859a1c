"""Which database the recorder stores in (``VOXRELAY_DATABASE_URL``), and its password
kept out of every log line, error and repr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.recorder.config import from_env
from services.recorder.database import masked, parse_database_url
from services.runtime import ConfigError
from services.supervisor.config import UpConfig
from services.supervisor.supervisor import child_specs
from tests.support.ports import free_port

PASSWORD = "s3cr3t-Pa55"
DEFAULT = Path("/data/recorder.sqlite3")


def test_no_url_is_sqlite_in_the_data_dir() -> None:
    for value in ("", "  "):
        database = parse_database_url(value, DEFAULT)
        assert (database.kind, database.path) == ("sqlite", DEFAULT)
    config = from_env({"VOXRELAY_DATA_DIR": "/srv/vox"})
    assert config.database.path == Path("/srv/vox/recorder.sqlite3")


def test_a_sqlite_url_names_the_file() -> None:
    database = parse_database_url("sqlite:///var/lib/voxrelay/events.db", DEFAULT)
    assert (database.kind, database.path) == ("sqlite", Path("/var/lib/voxrelay/events.db"))


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgres_url_is_kept_secret_and_shown_masked(scheme: str) -> None:
    url = f"{scheme}://vox:{PASSWORD}@db.internal:5433/voxrelay?sslmode=require"
    database = parse_database_url(url, DEFAULT)
    assert database.kind == "postgres" and database.url is not None
    assert database.url.reveal() == url
    assert str(database) == f"{scheme}://vox:***@db.internal:5433/voxrelay?sslmode=require"
    assert PASSWORD not in repr(database) and PASSWORD not in str(database)
    config = from_env({"VOXRELAY_DATABASE_URL": url})
    assert config.database == database and PASSWORD not in repr(config)


def test_a_password_given_as_an_option_is_masked_too() -> None:
    assert masked("postgresql://vox@db/voxrelay?password=hunter2&sslmode=verify-full") \
        == "postgresql://vox@db/voxrelay?password=***&sslmode=verify-full"
    assert masked("postgresql://db/voxrelay") == "postgresql://db/voxrelay"


@pytest.mark.parametrize("url", [
    f"mysql://vox:{PASSWORD}@db/voxrelay",
    f"postgresql://vox:{PASSWORD}@db:notaport/voxrelay",
    f"postgresql://vox:{PASSWORD}@db:99999/voxrelay",
    f"postgresql://:{PASSWORD}@/voxrelay",
    "sqlite://relative.db",
    "sqlite:///",
    "/just/a/path.sqlite3",
])
def test_a_bad_url_is_a_config_error_naming_the_key_not_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env({"VOXRELAY_DATABASE_URL": url})
    assert info.value.key == "VOXRELAY_DATABASE_URL"
    assert PASSWORD not in str(info.value)


def test_the_recorder_refuses_a_bad_url_at_start_with_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "VOXRELAY_DATA_DIR": str(tmp_path),
           "VOXRELAY_DATABASE_URL": f"mysql://vox:{PASSWORD}@db/voxrelay"}
    done = subprocess.run([sys.executable, "-m", "services.recorder"], env=env, check=False,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "VOXRELAY_DATABASE_URL" in done.stderr and "mysql://vox:***@db" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout


def test_a_server_it_cannot_reach_stops_the_recorder_without_showing_the_password(
        tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = {**os.environ, "VOXRELAY_DATA_DIR": str(tmp_path),
           "VOXRELAY_DATABASE_URL": f"postgresql://vox:{PASSWORD}@127.0.0.1:{port}/voxrelay"}
    done = subprocess.run([sys.executable, "-m", "services.recorder"], env=env, check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"cannot connect to postgresql://vox:***@127.0.0.1:{port}/voxrelay" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout


def test_voxrelay_up_hands_the_database_url_to_the_recorder(
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql://vox:{PASSWORD}@db/voxrelay"
    monkeypatch.setenv("VOXRELAY_DATABASE_URL", url)
    config = UpConfig(host="127.0.0.1", http_port=0, data_dir=Path("/data"), edges=1,
                      bus_publish="tcp://127.0.0.1:1", bus_subscribe="tcp://127.0.0.1:2",
                      use_simulator=True, sim_port=0, ice_hosts=None, metrics_base_port=0)
    recorder = next(spec for spec in child_specs(config) if spec.module == "services.recorder")
    assert recorder.env["VOXRELAY_DATABASE_URL"] == url
