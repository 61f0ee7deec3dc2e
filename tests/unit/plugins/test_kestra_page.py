"""The plugin's navigation entry and the page's own rules: relative links, text-only rendering,
nothing loaded from elsewhere."""

from __future__ import annotations

import re

from airflow_kestra_provider.plugins.kestra_plugin import KestraPlugin
from airflow_kestra_provider.plugins.status_app import PAGE_FILE


def test_the_nav_link_is_relative_so_a_base_url_sub_path_keeps_working():
    (view,) = KestraPlugin.external_views
    assert view["href"] == "kestra/"
    assert view["destination"] == "nav"
    (app,) = KestraPlugin.fastapi_apps
    assert app["url_prefix"] == "/kestra"


def test_the_page_puts_data_in_as_text_and_loads_nothing_from_elsewhere():
    page = PAGE_FILE.read_text(encoding="utf-8")
    assert "innerHTML" not in page and "outerHTML" not in page and "insertAdjacentHTML" not in page
    assert "document.write" not in page and "eval(" not in page
    assert re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page) == []
    assert "@import" not in page
    # its API is called relative to the page's own address
    assert 'const API = location.pathname.replace(/\\/*$/, "/") + "api/v1/";' in page


def test_the_page_follows_the_airflow_uis_theme_key():
    page = PAGE_FILE.read_text(encoding="utf-8")
    assert 'localStorage.getItem("theme")' in page
    assert "prefers-color-scheme: dark" in page
