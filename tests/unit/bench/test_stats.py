from __future__ import annotations

import numpy as np
import pytest

from airflow_kestra_provider.bench.stats import percentile, summarize


@pytest.mark.parametrize("q", [0, 1, 10, 50, 90, 99, 100])
def test_percentile_matches_linear_interpolation(q):
    values = [0.3, 5.0, 1.2, 7.7, 2.0, 2.0, 9.1, 0.05, 4.4, 3.3, 6.0]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_small_cases():
    assert percentile([4.0], 99) == 4.0
    assert percentile([1.0, 2.0], 50) == 1.5
    assert percentile(list(range(101)), 99) == 99
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize():
    summary = summarize([1.0, 2.0, 3.0, 4.0])
    assert summary is not None
    assert (summary.count, summary.mean, summary.p50, summary.max) == (4, 2.5, 2.5, 4.0)
    assert summary.p99 == pytest.approx(3.97)
    assert summarize([]) is None
