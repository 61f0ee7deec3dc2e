"""SQL text of the bulk clone (pure); the clone itself is checked against Airflow in
tests/integration/test_bench_scale.py."""

from __future__ import annotations

import json
from hashlib import md5

import pytest
from airflow.models.serialized_dag import SerializedDagModel

from airflow_kestra_provider.bench.scale_clone import (
    chunks,
    clone_statements,
    hash_text,
    insert_select,
    new_dag_id_sql,
)


def test_insert_select_copies_every_column_but_the_overridden():
    sql = insert_select("dag_tag", ["name", "dag_id"], {"dag_id": "'x'"})
    assert sql == (
        'INSERT INTO "dag_tag" ("name", "dag_id") SELECT t."name", \'x\' '
        'FROM "dag_tag" AS t CROSS JOIN generate_series(:first, :last) AS g(i) WHERE t.dag_id = :template'
    )


def test_insert_select_refuses_unknown_columns_and_bad_names():
    with pytest.raises(ValueError, match="no column"):
        insert_select("dag", ["dag_id"], {"nope": "1"})
    with pytest.raises(ValueError, match="bad SQL identifier"):
        insert_select("dag; DROP TABLE dag", ["dag_id"], {})


def test_new_dag_id_pads_like_scale_dag_id_and_quotes_the_prefix():
    assert new_dag_id_sql("it's_", 6) == "'it''s_' || lpad(g.i::text, greatest(6, length(g.i::text)), '0')"


def test_clone_statements_order_and_rewrites():
    columns = {
        "dag": ["dag_id", "is_paused", "next_dagrun"],
        "dag_tag": ["name", "dag_id"],
        "dag_version": ["id", "version_number", "dag_id", "created_at"],
        "serialized_dag": ["id", "dag_id", "data", "data_compressed", "dag_hash", "dag_version_id"],
        "dag_code": ["id", "dag_id", "fileloc", "source_code", "dag_version_id"],
    }
    dag, tag, version, serialized, code = clone_statements(columns, "kestra_scale_", 6)
    assert dag.startswith('INSERT INTO "dag" ("dag_id", "is_paused", "next_dagrun") SELECT \'kestra_scale_\'')
    assert 't."is_paused", t."next_dagrun"' in dag
    assert tag.startswith('INSERT INTO "dag_tag" ("name", "dag_id") SELECT t."name", ')
    assert 't."version_number"' in version and "gen_random_uuid()" in version
    assert "JOIN dag_version AS v ON v.dag_id = 'kestra_scale_'" in serialized
    assert "replace(t.data::text, :template_quoted, to_json(" in serialized
    assert "md5(replace(:hash_json, :template_quoted, to_json(" in serialized
    assert 't."data_compressed"' in serialized
    assert "v.id" in code and 't."source_code"' in code


def test_hash_text_is_what_airflow_hashes():
    data = {
        "__version": 3,
        "dag": {
            "dag_id": "d",
            "fileloc": "/x/y.py",
            "tasks": [{"__var": {"task_id": "b"}}, {"__var": {"task_id": "a"}}],
            "tags": ["z", "a"],
        },
    }
    text = hash_text(data)
    assert md5(text.encode()).hexdigest() == SerializedDagModel.hash(data)
    assert "fileloc" not in text
    assert json.dumps("d") in text
    assert data["dag"]["fileloc"] == "/x/y.py"  # the caller's data is left alone


def test_chunks():
    assert list(chunks(1, 10, 4)) == [(1, 4), (5, 8), (9, 10)]
    assert list(chunks(1, 1, 5000)) == [(1, 1)]
    assert list(chunks(2, 1, 5)) == []
    with pytest.raises(ValueError):
        list(chunks(1, 2, 0))
