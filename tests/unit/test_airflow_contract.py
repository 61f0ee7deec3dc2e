"""The Airflow internals this provider depends on are still the ones it was written against.

The registry is :mod:`airflow_kestra_provider.airflow_seams`. A failure here after an Airflow
upgrade names the Airflow object, where its record is, our files to review and the port
checklist; after porting, ``python -m airflow_kestra_provider.airflow_seams --fingerprints``
prints the lines to paste into the records.

The tests also keep the registry complete: every private Airflow name our code imports, reads,
overrides or assigns (found in our source) must be registered, and a name a subclass of ours
adds must not shadow one of its Airflow base classes unless it is registered as an override.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from airflow_kestra_provider import airflow_seams
from airflow_kestra_provider.airflow_seams import (
    KINDS,
    MIRRORED_COLUMNS,
    SEAMS,
    SQL_COLUMNS,
    SQL_STATES,
    Seam,
    check_fingerprint,
    check_params,
    declares_attribute,
    is_ours,
    owner_and_attribute,
    resolve,
    stock_object,
    stock_value,
    wants_fingerprint,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "airflow_kestra_provider"
BY_NAME = {seam.name: seam for seam in SEAMS}


def _ids(seam: Seam) -> str:
    return seam.name.removeprefix("airflow.")


# -- the registry itself -----------------------------------------------------------------------
def test_registry_is_well_formed():
    assert len(BY_NAME) == len(SEAMS), "a qualified name is registered twice"
    for seam in SEAMS:
        assert seam.kind in KINDS, seam
        assert seam.name.startswith("airflow."), seam
        assert seam.note and "\n" not in seam.note, seam
        assert seam.ours, seam
        owner = seam.name.rsplit(".", 2)[-2]
        attribute = seam.name.rsplit(".", 1)[-1]
        texts = []
        for path in seam.ours:
            assert (ROOT / path).is_file(), f"{seam.name}: {path} does not exist"
            texts.append((ROOT / path).read_text(encoding="utf-8"))
        assert any(attribute in text or owner in text for text in texts), (
            f"{seam.name}: none of {seam.ours} names {attribute} or {owner}; update the record"
        )


# -- (a) names resolve, signatures hold --------------------------------------------------------
@pytest.mark.parametrize("seam", SEAMS, ids=_ids)
def test_seam_resolves_and_keeps_its_parameters(seam: Seam):
    if seam.declared:
        owner, attribute = owner_and_attribute(seam.name)
        assert inspect.isclass(owner) and declares_attribute(owner, attribute), airflow_seams.port_checklist(
            seam, "the attribute is no longer declared", owner
        )
        return
    try:
        obj = stock_value(seam.name)
    except airflow_seams.SeamMissing as err:
        pytest.fail(airflow_seams.port_checklist(seam, f"it no longer resolves ({err})"))
    assert not is_ours(obj), airflow_seams.port_checklist(seam, airflow_seams.PATCHED_WITHOUT_WRAPPED, obj)
    if callable(obj) and seam.check_signature:
        failure = check_params(seam, obj)
        assert failure is None, failure
    else:
        assert seam.params is None, (
            f"{seam.name}: params recorded for an object whose signature is not checked"
        )


# -- (b) the stock bodies we copy, wrap or rely on are unchanged -------------------------------
FINGERPRINTED = [seam for seam in SEAMS if seam.fingerprint is not None]


def _stock(seam: Seam) -> Any:
    try:
        return stock_object(seam)
    except airflow_seams.SeamMissing as err:
        pytest.fail(airflow_seams.port_checklist(seam, f"it no longer resolves ({err})"))


@pytest.mark.parametrize("seam", FINGERPRINTED, ids=_ids)
def test_stock_source_has_the_recorded_fingerprint(seam: Seam):
    failure = check_fingerprint(seam, _stock(seam))
    assert failure is None, failure


@pytest.mark.parametrize("seam", [s for s in SEAMS if not s.declared], ids=_ids)
def test_every_seam_that_needs_a_fingerprint_has_one(seam: Seam):
    stock = _stock(seam)
    if wants_fingerprint(seam, stock):
        assert seam.fingerprint is not None, check_fingerprint(seam, stock)


# -- (c) the SQL text names columns and states Airflow's models have ----------------------------
@cache
def _airflow_tables() -> dict[str, Any]:
    from airflow.jobs.job import Job
    from airflow.models import import_all_models
    from airflow.models.base import Base

    import_all_models()
    tables = dict(Base.metadata.tables)
    tables.setdefault(Job.__tablename__, Job.__table__)
    return tables


@pytest.mark.parametrize("record", SQL_COLUMNS, ids=lambda r: r.table)
def test_sql_columns_exist_on_airflows_models(record: airflow_seams.SqlColumns):
    tables = _airflow_tables()
    assert record.table in tables, f"Airflow has no table {record.table} any more; review {record.ours}"
    missing = [column for column in record.columns if column not in tables[record.table].c]
    assert not missing, (
        f"Airflow's {record.table} has no column(s) {missing}: the SQL text in {', '.join(record.ours)} "
        f"names them; port the SQL and update SQL_COLUMNS in {airflow_seams.REGISTRY}"
    )


def test_the_sql_states_are_airflows():
    for enum_name, values in SQL_STATES.items():
        enum = resolve(enum_name)
        known = {str(member.value) for member in enum}
        assert set(values) <= known, f"{enum_name} lost {sorted(set(values) - known)}; review the SQL text"


def test_every_column_our_sql_names_by_alias_is_listed():
    """``ti.x``, ``j.x`` and ``dr.x`` in the SQL of claims.py and the bench collector are
    task_instance, job and dag_run columns: each must be in SQL_COLUMNS."""
    aliases = {"ti": "task_instance", "j": "job", "dr": "dag_run"}
    listed: dict[str, set[str]] = {}
    for record in SQL_COLUMNS:
        listed.setdefault(record.table, set()).update(record.columns)
    unlisted = set()
    for path in (airflow_seams.CLAIMS, airflow_seams.COLLECT):
        text = (ROOT / path).read_text(encoding="utf-8")
        for alias, column in re.findall(r"\b(ti|j|dr)\.([a-z_]+)\b", text):
            if column not in listed[aliases[alias]]:
                unlisted.add(f"{path}: {aliases[alias]}.{column}")
    assert not unlisted, f"add to SQL_COLUMNS in {airflow_seams.REGISTRY}: {sorted(unlisted)}"


@pytest.mark.parametrize(("ours", "theirs"), MIRRORED_COLUMNS, ids=lambda v: v)
def test_mirrored_columns_match_airflows(ours: str, theirs: str):
    from airflow_kestra_provider.models.tables import metadata

    our_table, our_column = ours.split(".")
    table, column = theirs.split(".")
    mine = metadata.tables[our_table].c[our_column]
    stock_table = _airflow_tables()[table]
    assert column in stock_table.c, f"{theirs} is gone; {ours} copies it"
    stock = stock_table.c[column]
    assert mine.type.python_type is stock.type.python_type or (
        {mine.type.python_type.__name__, stock.type.python_type.__name__} <= {"str", "UUID"}
    ), f"{ours} is {mine.type!r}, {theirs} now {stock.type!r}"
    stock_length = getattr(stock.type, "length", None)
    our_length = getattr(mine.type, "length", None)
    if stock_length is not None and our_length is not None:
        assert our_length >= stock_length, f"{theirs} widened to {stock_length}; {ours} holds {our_length}"


# -- (d) the checker fails when a stock body changes -------------------------------------------
def _stand_in(self, session):  # a body that is not the stock one
    return 0


def test_check_fingerprint_fails_on_a_changed_body_and_says_what_to_do():
    seam = BY_NAME["airflow.jobs.scheduler_job_runner.SchedulerJobRunner._do_scheduling"]
    assert check_fingerprint(seam, stock_object(seam)) is None
    message = check_fingerprint(seam, _stand_in)
    assert message is not None
    assert seam.name in message
    assert "airflow_kestra_provider/scheduler/runner.py" in message
    assert f"{airflow_seams.REGISTRY}:{airflow_seams.registry_line(seam.fingerprint or '')}" in message
    assert airflow_seams.source_fingerprint(_stand_in) in message
    assert "port checklist" in message
    assert airflow_seams.CLI in message


def test_the_fingerprint_ignores_indentation_and_trailing_whitespace_only():
    method = "    def f(self, x):  \n        return x\t\n\n"
    function = "def f(self, x):\n    return x\n"
    assert airflow_seams.fingerprint_of(method) == airflow_seams.fingerprint_of(function)
    assert airflow_seams.fingerprint_of(function) != airflow_seams.fingerprint_of(
        function.replace("x\n", "-x\n")
    )


def test_check_params_fails_on_a_changed_signature():
    seam = replace(BY_NAME["airflow.models.dagrun.DagRun.active_runs_of_dags"], params=("gone",))
    message = check_params(seam, resolve(seam.name))
    assert message is not None and seam.name in message and "the parameters changed" in message


def test_a_patch_of_ours_is_looked_through_to_the_stock_function(monkeypatch):
    """Other tests install our patches in this process: the checks must see the stock code."""
    from airflow.timetables._cron import CronMixin

    from airflow_kestra_provider.scheduler import cron_descriptions

    seam = BY_NAME["airflow.timetables._cron.CronMixin._describe_with_dom_dow_fix"]
    monkeypatch.setattr(CronMixin, "_describe_with_dom_dow_fix", CronMixin._describe_with_dom_dow_fix)
    cron_descriptions.install()
    assert is_ours(CronMixin._describe_with_dom_dow_fix)
    assert check_fingerprint(seam, stock_object(seam)) is None
    assert check_params(seam, stock_value(seam.name)) is None


def test_fingerprints_cli_prints_lines_to_paste(capsys):
    assert airflow_seams.main(["--fingerprints"]) == 0
    out = capsys.readouterr().out
    for seam in FINGERPRINTED:
        assert f'        fingerprint="{seam.fingerprint}",' in out
        assert f"# {seam.name}  (line {airflow_seams.registry_line(seam.fingerprint or '')})" in out
    assert "CHANGED" not in out


# -- values we assume ----------------------------------------------------------------------------
def test_the_values_we_assume():
    from airflow.sdk.definitions.context import _AIRFLOW_PARSING_CONTEXT_DAG_ID
    from airflow.settings import task_instance_mutation_hook
    from airflow.utils.sqlalchemy import CommitProhibitorGuard

    assert _AIRFLOW_PARSING_CONTEXT_DAG_ID == "_AIRFLOW_PARSING_CONTEXT_DAG_ID"
    assert f'"{_AIRFLOW_PARSING_CONTEXT_DAG_ID}"' in (ROOT / airflow_seams.SCALE_LOADER).read_text()
    assert task_instance_mutation_hook.is_noop is True
    assert CommitProhibitorGuard.expected_commit is False


# -- the registry is complete ---------------------------------------------------------------------
def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_airflow(module: str) -> bool:
    return module == "airflow" or module.startswith("airflow.")


@dataclass(frozen=True)
class Touch:
    name: str  # qualified Airflow name
    where: str  # our file:line
    how: str


def _chain(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ["a", "b", "c"]; None when the chain does not start at a name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


@cache
def _stock_names(cls: type) -> frozenset[str]:
    """Every name ``cls`` has: its attributes, declared fields and assignments to ``self``."""
    names = set(dir(cls))
    for klass in cls.__mro__:
        names.update(getattr(klass, "__annotations__", {}))
        if klass.__module__ == "builtins":
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        names.update(re.findall(r"\bself\.([A-Za-z_]\w*)\s*(?::[^=\n]+)?=(?!=)", source))
    try:
        import attrs

        if attrs.has(cls):
            names.update(field.name for field in attrs.fields(cls))
    except ImportError:
        pass
    return frozenset(names)


def _class_touches(node: ast.ClassDef, stock_name: str, where: str) -> Iterator[Touch]:
    stock = resolve(stock_name)
    if not inspect.isclass(stock):
        return
    ours: set[str] = set()
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            ours.add(item.name)
        elif isinstance(item, ast.Assign):
            ours.update(t.id for t in item.targets if isinstance(t, ast.Name))
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            ours.add(item.target.id)
    used: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "self":
            (ours if isinstance(sub.ctx, ast.Store) else used).add(sub.attr)
    for name in sorted(ours):
        if name.startswith("__") and name.endswith("__"):
            continue
        if name in _stock_names(stock):
            yield Touch(f"{stock_name}.{name}", f"{where}:{node.lineno}", f"{node.name} defines or sets it")
    for name in sorted(used - ours):
        if _private(name):
            yield Touch(f"{stock_name}.{name}", f"{where}:{node.lineno}", f"{node.name} uses it")


def _file_touches(path: Path) -> Iterator[Touch]:
    where = str(path.relative_to(ROOT))
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bound: dict[str, str] = {}  # local name -> qualified Airflow name
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and _is_airflow(node.module) and not node.level:
            for alias in node.names:
                qualified = f"{node.module}.{alias.name}"
                bound[alias.asname or alias.name] = qualified
                if any(_private(part) for part in qualified.split(".")):
                    yield Touch(qualified, f"{where}:{node.lineno}", "imported")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _is_airflow(alias.name):
                    if alias.asname:  # import airflow.x.y as z: z is airflow.x.y
                        bound[alias.asname] = alias.name
                    else:  # import airflow.x.y: binds airflow
                        bound["airflow"] = "airflow"
                    if any(_private(part) for part in alias.name.split(".")):
                        yield Touch(alias.name, f"{where}:{node.lineno}", "imported")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain = _chain(node)
            if chain and chain[0] in bound and _private(node.attr):
                yield Touch(".".join([bound[chain[0]], *chain[1:]]), f"{where}:{node.lineno}", "read")
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                chain = _chain(target) if isinstance(target, ast.Attribute) else None
                if chain and chain[0] in bound:
                    yield Touch(".".join([bound[chain[0]], *chain[1:]]), f"{where}:{node.lineno}", "assigned")
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                chain = _chain(base)
                if chain and chain[0] in bound:
                    yield from _class_touches(node, ".".join([bound[chain[0]], *chain[1:]]), where)


def _covered(name: str) -> bool:
    if name in BY_NAME or any(seam.startswith(name + ".") for seam in BY_NAME):
        return True
    owner_name, _, attribute = name.rpartition(".")
    try:
        owner = resolve(owner_name)
    except airflow_seams.SeamMissing:
        return False
    if inspect.isclass(owner):
        return any(
            f"{klass.__module__}.{klass.__qualname__}.{attribute}" in BY_NAME for klass in owner.__mro__
        )
    return False


def test_every_private_touch_and_every_shadowed_name_is_registered():
    files = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "airflow_seams.py")
    touches = [touch for path in files for touch in _file_touches(path)]
    assert any(t.name.endswith("SchedulerJobRunner._do_scheduling") for t in touches)  # the scan works
    missing = sorted({f"{t.name}  ({t.where}: {t.how})" for t in touches if not _covered(t.name)})
    assert not missing, (
        "register these in airflow_kestra_provider/airflow_seams.py, or rename ours when it only "
        "shadows a new Airflow name by accident:\n  " + "\n  ".join(missing)
    )


def test_the_scan_finds_what_it_is_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    source = tmp_path / "mod.py"
    source.write_text(
        "from airflow._shared.timezones import timezone\n"
        "from airflow.models.dagrun import DagRun\n"
        "from airflow.models.dagbag import CachedDBDagBag\n"
        "DagRun._get_partial_task_ids(None)\n"
        "DagRun.active_runs_of_dags = None\n"
        "class Cache(CachedDBDagBag):\n"
        "    def _on_cache_hit(self):\n"
        "        self._brand_new = self._dags\n"
        "    def clear_cache(self):\n"
        "        return 0\n",
        encoding="utf-8",
    )
    found = {touch.name for touch in _file_touches(source)}
    assert found == {
        "airflow._shared.timezones.timezone",
        "airflow.models.dagrun.DagRun._get_partial_task_ids",
        "airflow.models.dagrun.DagRun.active_runs_of_dags",
        "airflow.models.dagbag.CachedDBDagBag._on_cache_hit",
        "airflow.models.dagbag.CachedDBDagBag._dags",
        "airflow.models.dagbag.CachedDBDagBag.clear_cache",  # shadows a stock method
    }
    assert _covered("airflow.models.dagbag.CachedDBDagBag._dags")  # registered on DBDagBag
    assert not _covered("airflow.models.dagbag.CachedDBDagBag.clear_cache")
