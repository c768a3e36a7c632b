"""The [calibs] configuration: flags, locations, deprecated keys, which file is read."""
from __future__ import annotations

import os

import pytest

from draconis.caldb.config import (ConfigDeprecationWarning, find_config_file, load_config,
                                   parse_config_text)
from draconis.errors import ConfigError


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty home directory and no configuration variables."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    for name in ("DRACONISRC", "DRAGONSRC"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def test_flags_and_cascade_order(tmp_path):
    text = f"""
[calibs]
databases = {tmp_path}/a.db get store
            {tmp_path}/b.db
            {tmp_path}/c.db store
            postgresql+psycopg2://me:secret@db.example/cals get  # team database
            https://archive.gemini.edu get
"""
    cfg = parse_config_text(text, "rc")
    assert [os.path.basename(d.path or d.url) for d in cfg.databases[:3]] == ["a.db", "b.db", "c.db"]
    assert [(d.get, d.store) for d in cfg.databases] == [(True, True), (True, False), (False, True),
                                                        (True, False), (True, False)]
    assert [d.kind for d in cfg.databases] == ["sqlite", "sqlite", "sqlite", "sql", "remote"]
    assert [d.kind for d in cfg.get_databases] == ["sqlite", "sqlite", "sql", "remote"]
    assert [os.path.basename(d.path) for d in cfg.store_databases] == ["a.db", "c.db"]
    assert cfg.local_database.path == f"{tmp_path}/a.db"
    assert "secret" not in cfg.databases[3].describe()


def test_unknown_flag_is_an_error():
    with pytest.raises(ConfigError, match=r"rc: unknown flag\(s\) stroe"):
        parse_config_text("[calibs]\ndatabases = /x/cal.db get stroe\n", "rc")


def test_directory_means_cal_manager_db_inside(tmp_path):
    cfg = parse_config_text(f"[calibs]\ndatabases = {tmp_path} get\n", "rc")
    assert cfg.databases[0].path == str(tmp_path / "cal_manager.db")
    assert cfg.databases[0].url == f"sqlite:///{tmp_path}/cal_manager.db"


def test_file_url_is_a_local_sqlite_file(tmp_path):
    cfg = parse_config_text(f"[calibs]\ndatabases = file://{tmp_path} get\n", "rc")
    assert (cfg.databases[0].kind, cfg.databases[0].path) == ("sqlite", str(tmp_path / "cal_manager.db"))


def test_home_and_variables_are_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PLAYGROUND", "play")
    cfg = parse_config_text("[calibs]\ndatabases = ~/$PLAYGROUND/cal.db get store\n", "rc")
    assert cfg.databases[0].path == str(tmp_path / "play" / "cal.db")


def test_quoted_path_with_spaces(tmp_path):
    cfg = parse_config_text(f'[calibs]\ndatabases = "{tmp_path}/my data/cal.db" store get\n', "rc")
    assert cfg.databases[0].path == f"{tmp_path}/my data/cal.db"
    assert cfg.databases[0].store and cfg.databases[0].get


def test_old_database_dir_key_warns_and_works(tmp_path):
    text = f"[calibs]\nstandalone = True\ndatabase_dir = {tmp_path}\n"
    with pytest.warns(ConfigDeprecationWarning, match="database_dir is deprecated"):
        cfg = parse_config_text(text, "rsys.cfg")
    assert cfg.databases[0].path == str(tmp_path / "cal_manager.db")
    assert cfg.databases[0].get and cfg.databases[0].store


def test_malformed_file_is_a_config_error():
    with pytest.raises(ConfigError, match="rc: malformed configuration file"):
        parse_config_text("databases = x\n[calibs\n", "rc")


def test_no_calibs_section_means_no_databases():
    assert parse_config_text("[other]\nx = 1\n", "rc").databases == ()


def test_search_order(home, tmp_path, monkeypatch):
    assert find_config_file() is None and load_config().databases == ()
    dragons = home / ".dragons" / "dragonsrc"
    dragons.parent.mkdir()
    dragons.write_text(f"[calibs]\ndatabases = {tmp_path}/dragons.db get store\n")
    assert find_config_file() == str(dragons)
    env_dragons = tmp_path / "env_dragonsrc"
    env_dragons.write_text(f"[calibs]\ndatabases = {tmp_path}/envdragons.db\n")
    monkeypatch.setenv("DRAGONSRC", str(env_dragons))
    assert find_config_file() == str(env_dragons)
    own = home / ".draconis" / "draconisrc"
    own.parent.mkdir()
    own.write_text(f"[calibs]\ndatabases = {tmp_path}/draconis.db get\n")
    assert find_config_file() == str(own)
    env_own = tmp_path / "env_draconisrc"
    env_own.write_text(f"[calibs]\ndatabases = {tmp_path}/envdraconis.db get\n")
    monkeypatch.setenv("DRACONISRC", str(env_own))
    assert find_config_file() == str(env_own)
    explicit = tmp_path / "explicit"
    explicit.write_text(f"[calibs]\ndatabases = {tmp_path}/explicit.db get\n")
    assert load_config(explicit).databases[0].path == f"{tmp_path}/explicit.db"
    assert load_config().databases[0].path == f"{tmp_path}/envdraconis.db"


def test_named_file_must_exist(home, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="nope.rc: configuration file \\(from --config\\) does not exist"):
        load_config(tmp_path / "nope.rc")
    monkeypatch.setenv("DRAGONSRC", str(tmp_path / "missing_dragonsrc"))
    with pytest.raises(ConfigError, match=r"missing_dragonsrc: .*\$DRAGONSRC"):
        load_config()


def test_old_geminidr_file_is_read_last(home, tmp_path):
    old = home / ".geminidr" / "rsys.cfg"
    old.parent.mkdir()
    old.write_text(f"[calibs]\nstandalone = True\ndatabase_dir = {tmp_path}\n")
    with pytest.warns(ConfigDeprecationWarning):
        cfg = load_config()
    assert cfg.source == str(old)
    assert cfg.local_database.path == str(tmp_path / "cal_manager.db")
