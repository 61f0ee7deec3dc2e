"""Airflow plugin: mounts the Kestra status app at ``/kestra`` and adds it to the UI's navigation."""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin


class StatusAppOnFirstRequest:
    """The ASGI app mounted at ``/kestra``: builds the FastAPI status app on its first request.

    Every Airflow process that loads plugins (scheduler, workers, dag-processor, triggerer)
    imports this module, but only the api-server serves the app; building it imports FastAPI
    and Airflow's API security module: loading the plugins took 1.3 s with it, 0.3 s without.
    """

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:  # one event loop per api-server worker: no lock needed
            from airflow_kestra_provider.plugins.status_app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class KestraPlugin(AirflowPlugin):
    name = "kestra"
    fastapi_apps: list[Any] = [  # noqa: RUF012 - AirflowPlugin declares these as class attributes
        {"app": StatusAppOnFirstRequest(), "url_prefix": "/kestra", "name": "Kestra queue"}
    ]
    # href relative: the UI resolves an iframe's src against its <base href>, which is the path of
    # [api] base_url, so the page opens under a sub-path too ("/kestra/" would not)
    external_views: list[Any] = [  # noqa: RUF012
        {"name": "Kestra queue", "href": "kestra/", "destination": "nav", "url_route": "kestra"}
    ]
