"""Airflow plugin: mounts the Kestra status app at ``/kestra`` and adds it to the UI's navigation."""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_kestra_provider.plugins.status_app import create_app


class KestraPlugin(AirflowPlugin):
    name = "kestra"
    fastapi_apps: list[Any] = [  # noqa: RUF012 - AirflowPlugin declares these as class attributes
        {"app": create_app(), "url_prefix": "/kestra", "name": "Kestra queue status"}
    ]
    external_views: list[Any] = [  # noqa: RUF012
        {"name": "Kestra queue", "href": "/kestra/", "destination": "nav", "url_route": "kestra"}
    ]
