"""Provider metadata that Airflow's ProvidersManager reads through the entry point."""

from __future__ import annotations

from typing import Any

from airflow_kestra_provider import __version__
from airflow_kestra_provider.settings import OPTIONS, SECTION, VERSION_ADDED


def _config_section() -> dict[str, Any]:
    return {
        SECTION: {
            "description": "Options of the airflow-kestra-provider: the KestraExecutor, its workers, "
            "the Kestra scheduler and the embedded standalone stack.",
            "options": {
                option.name: {
                    "description": option.description,
                    "version_added": VERSION_ADDED,
                    "type": option.type,
                    "example": option.example,
                    "default": option.default,
                }
                for option in OPTIONS
            },
        }
    }


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-kestra-provider",
        "name": "Kestra performance",
        "description": "Kestra-class scheduling latency and throughput for Apache Airflow 3.",
        "versions": [__version__],
        "executors": ["airflow_kestra_provider.executors.kestra_executor.KestraExecutor"],
        "db-managers": ["airflow_kestra_provider.models.db.KestraDBManager"],
        "cli": ["airflow_kestra_provider.cli.definition.get_kestra_cli_commands"],
        "plugins": [
            {
                "name": "kestra",
                "plugin-class": "airflow_kestra_provider.plugins.kestra_plugin.KestraPlugin",
            }
        ],
        "config": _config_section(),
    }
