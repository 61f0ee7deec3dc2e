"""Clone one DAG's metadata rows N times in SQL (``INSERT ... SELECT`` over ``generate_series``).

The template DAG is written first by the dag-processor's own function; this module then copies
every row that function wrote for it, changing only what differs between the DAGs of the
generated file: the dag id (also inside the serialized JSON), the row ids (fresh UUIDv7, as
Airflow makes them) and ``serialized_dag.dag_hash``, recomputed in SQL with ``md5`` over the same
canonical JSON text that ``SerializedDagModel.hash`` feeds to Python's md5.

PostgreSQL only. Pure text building here; :func:`clone` runs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from hashlib import md5
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

# Rows the dag-processor writes for a DAG without assets, owners' links or warnings, in FK order.
CLONED_TABLES = ("dag", "dag_tag", "dag_version", "serialized_dag", "dag_code")
# Tables keyed by dag id that must hold no row for the template (a template using them is refused).
DAG_ID_COLUMNS = ("dag_id", "target_dag_id")


def new_dag_id_sql(prefix: str, width: int) -> str:
    """SQL for the i-th dag id, ``prefix`` + i zero-padded to ``width`` (as ``scale_dag_id``)."""
    return f"{_literal(prefix)} || lpad(g.i::text, greatest({width}, length(g.i::text)), '0')"


# A UUIDv7: 48-bit Unix time in ms, version 7, then the random and variant bits of a v4 UUID.
UUID7_SQL = (
    "(lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') || '7' || "
    "substr(replace(gen_random_uuid()::text, '-', ''), 14, 19))::uuid"
)


def insert_select(
    table: str,
    columns: Sequence[str],
    overrides: Mapping[str, str],
    joins: str = "",
) -> str:
    """``INSERT INTO table (columns) SELECT ... FROM table t x generate_series(:first, :last) g(i)``.

    Each column is copied from the template row ``t`` unless ``overrides`` gives an expression.
    """
    unknown = set(overrides) - set(columns)
    if unknown:
        raise ValueError(f"{table}: no column(s) {sorted(unknown)}")
    names = ", ".join(_ident(c) for c in columns)
    values = ", ".join(overrides.get(c, f"t.{_ident(c)}") for c in columns)
    return (
        f"INSERT INTO {_ident(table)} ({names}) SELECT {values} "
        f"FROM {_ident(table)} AS t CROSS JOIN generate_series(:first, :last) AS g(i){joins} "
        "WHERE t.dag_id = :template"
    )


def clone_statements(columns: Mapping[str, Sequence[str]], prefix: str, width: int) -> list[str]:
    """The statements that copy the template's rows to dag ids ``prefix`` + i, i in [:first, :last].

    Bind parameters: ``template`` (dag id), ``template_quoted`` (its JSON string, quotes included),
    ``hash_json`` (the template's canonical hash text), ``first``, ``last``.
    """
    new_id = new_dag_id_sql(prefix, width)
    quoted_new_id = f"to_json({new_id})::text"
    version_join = f" JOIN dag_version AS v ON v.dag_id = {new_id}"
    return [
        insert_select("dag", columns["dag"], {"dag_id": new_id}),
        insert_select("dag_tag", columns["dag_tag"], {"dag_id": new_id}),
        insert_select("dag_version", columns["dag_version"], {"id": UUID7_SQL, "dag_id": new_id}),
        insert_select(
            "serialized_dag",
            columns["serialized_dag"],
            {
                "id": UUID7_SQL,
                "dag_id": "v.dag_id",
                "dag_version_id": "v.id",
                "data": f"replace(t.data::text, :template_quoted, {quoted_new_id})::jsonb",
                "dag_hash": f"md5(replace(:hash_json, :template_quoted, {quoted_new_id}))",
            },
            version_join,
        ),
        insert_select(
            "dag_code",
            columns["dag_code"],
            {"id": UUID7_SQL, "dag_id": "v.dag_id", "dag_version_id": "v.id"},
            version_join,
        ),
    ]


def hash_text(data: Mapping[str, Any]) -> str:
    """The exact text whose md5 is ``SerializedDagModel.hash(data)`` (checked against it by the caller)."""
    from airflow.models.serialized_dag import SerializedDagModel

    canonical = SerializedDagModel._sort_serialized_dag_dict(data)
    canonical = dict(canonical)
    canonical["dag"] = {k: v for k, v in canonical["dag"].items() if k != "fileloc"}
    return json.dumps(canonical, sort_keys=True)


def chunks(first: int, last: int, size: int) -> Iterable[tuple[int, int]]:
    """Inclusive ranges covering [first, last], each at most ``size`` long."""
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    for start in range(first, last + 1, size):
        yield start, min(last, start + size - 1)


def table_columns(conn: Connection, tables: Iterable[str]) -> dict[str, list[str]]:
    rows = conn.execute(
        text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ANY(:tables) ORDER BY ordinal_position"
        ),
        {"tables": list(tables)},
    )
    result: dict[str, list[str]] = {}
    for table, column in rows:
        result.setdefault(table, []).append(column)
    return result


def check_template(conn: Connection, template: str) -> tuple[str, str]:
    """Refuse a template with rows this module does not copy; return (template_quoted, hash_json)."""
    from airflow.models.serialized_dag import SerializedDagModel

    rows = conn.execute(
        text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND column_name = ANY(:cols) "
            "AND table_name <> ALL(:cloned)"
        ),
        {"cols": list(DAG_ID_COLUMNS), "cloned": list(CLONED_TABLES)},
    ).all()
    for table, column in rows:
        found = conn.execute(
            text(f"SELECT 1 FROM {_ident(table)} WHERE {_ident(column)} = :t LIMIT 1"), {"t": template}
        ).first()
        if found is not None:
            raise RuntimeError(f"template {template} has rows in {table}, which the SQL clone does not copy")
    data, compressed, dag_hash, versions = conn.execute(
        text(
            "SELECT s.data, s.data_compressed, s.dag_hash, "
            "(SELECT count(*) FROM dag_version WHERE dag_id = :t) "
            "FROM serialized_dag s WHERE s.dag_id = :t"
        ),
        {"t": template},
    ).one()
    if compressed is not None or data is None or versions != 1:
        raise RuntimeError("the SQL clone needs one uncompressed serialized version of the template")
    hashed = hash_text(data)
    if not SerializedDagModel.hash(data) == md5(hashed.encode("utf-8")).hexdigest() == dag_hash:
        raise RuntimeError(f"template dag_hash {dag_hash}: cannot reproduce it from the stored data")
    return json.dumps(template), hashed


def clone(
    conn: Connection,
    template: str,
    prefix: str,
    width: int,
    first: int,
    last: int,
    chunk: int = 5000,
    progress: Any = None,
) -> None:
    """Copy ``template``'s rows to dag ids ``prefix`` + i for i in [first, last], one transaction per chunk."""
    template_quoted, hash_json = check_template(conn, template)
    statements = [text(s) for s in clone_statements(table_columns(conn, CLONED_TABLES), prefix, width)]
    conn.commit()
    for start, end in chunks(first, last, chunk):
        params = {
            "template": template,
            "template_quoted": template_quoted,
            "hash_json": hash_json,
            "first": start,
            "last": end,
        }
        for statement in statements:
            conn.execute(statement, params)
        conn.commit()
        if progress is not None:
            progress(end)
    for table in CLONED_TABLES:
        conn.execute(text(f"ANALYZE {_ident(table)}"))
    conn.commit()


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"bad SQL identifier {name!r}")
    return f'"{name}"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
