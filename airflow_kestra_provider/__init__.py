"""Kestra-class scheduling latency and throughput for Apache Airflow 3."""

from __future__ import annotations

__version__ = "0.2.0"
