"""Cron descriptions are remembered by expression and equal Airflow's own."""

from __future__ import annotations


def test_descriptions_equal_airflows_and_each_expression_is_described_once():
    from airflow.timetables._cron import CronMixin
    from airflow.timetables.trigger import CronTriggerTimetable

    expressions = ["@daily", "0 * * * *", "15 3 1 * 1", "*/5 9-17 * * 1-5"]
    expected = [CronTriggerTimetable(e, timezone="UTC").description for e in expressions]

    from airflow_kestra_provider.scheduler import cron_descriptions

    cron_descriptions.install()
    cron_descriptions.install()  # idempotent: wrapped once
    memo = CronMixin._describe_with_dom_dow_fix.kestra_memo
    memo.cache_clear()
    for _ in range(3):
        assert [CronTriggerTimetable(e, timezone="UTC").description for e in expressions] == expected
    info = memo.cache_info()
    assert (info.misses, info.hits) == (len(expressions), 2 * len(expressions))
    assert CronTriggerTimetable("not a cron", timezone="UTC").description == ""
