from __future__ import annotations

import json
from pathlib import Path

import airflow
import jsonschema

from airflow_kestra_provider.get_provider_info import get_provider_info
from airflow_kestra_provider.settings import OPTIONS


def test_provider_info_matches_airflow_schema():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_every_option_is_fully_declared():
    declared = get_provider_info()["config"]["kestra"]["options"]
    assert set(declared) == {o.name for o in OPTIONS}
    for name, option in declared.items():
        for key in ("description", "type", "version_added", "example"):
            assert option[key], f"{name} lacks {key}"
        assert option["default"] is not None, f"{name} lacks a default"


def test_registered_with_providers_manager():
    from airflow.providers_manager import ProvidersManager

    providers = ProvidersManager().providers
    assert "airflow-kestra-provider" in providers


def test_plugin_is_loaded_by_airflow():
    from airflow import plugins_manager

    plugins, _ = plugins_manager._get_plugins()
    assert "kestra" in {plugin.name for plugin in plugins}
    assert plugins_manager.get_import_errors() == {}
    apps, _ = plugins_manager.get_fastapi_plugins()
    assert any(app["url_prefix"] == "/kestra" for app in apps)


def test_db_manager_is_discovered_and_valid():
    from airflow.utils.db_manager import RunDBManager

    from airflow_kestra_provider.models.db import KestraDBManager

    manager = RunDBManager()
    assert KestraDBManager in manager._managers
    manager.validate()  # our tables are not Airflow's; env.py sets version_table
    assert {
        "kestra_worker",
        "kestra_workload",
        "alembic_version_kestra",
    } <= manager.get_required_table_names()


def test_migrations_end_at_the_head_the_manager_declares():
    from alembic.script import ScriptDirectory

    from airflow_kestra_provider import __version__
    from airflow_kestra_provider.models.db import KestraDBManager

    script = ScriptDirectory(KestraDBManager.migration_dir)
    assert script.get_heads() == [KestraDBManager.revision_heads_map[__version__]]
