"""The Airflow versions this provider is tested with, and the check its components start with.

The scheduler, the executor and the workers override, wrap and patch Airflow internals (listed in
:mod:`airflow_kestra_provider.airflow_seams`); on an Airflow release outside the tested range
they may do the wrong thing without failing. So ``airflow kestra scheduler``, ``airflow kestra
worker`` and ``KestraExecutor.start`` refuse to start on one, unless ``[kestra]
allow_untested_airflow`` is set, in which case they log a warning and start.
"""

from __future__ import annotations

import logging

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from airflow_kestra_provider import __version__, settings

log = logging.getLogger(__name__)

# The range of apache-airflow in pyproject.toml's dependencies (a unit test checks they are equal).
TESTED_AIRFLOW_RANGE = ">=3.3.2,<3.4"
TESTED_AIRFLOW = SpecifierSet(TESTED_AIRFLOW_RANGE)
OPTION = f"[{settings.SECTION}] allow_untested_airflow"
OPTION_ENV = f"AIRFLOW__{settings.SECTION.upper()}__ALLOW_UNTESTED_AIRFLOW"


def lowest_tested() -> Version:
    """The lowest release the range allows (its ``>=`` bound): what CI tests besides the newest."""
    return min(Version(spec.version) for spec in TESTED_AIRFLOW if spec.operator == ">=")


def _installed_airflow_version() -> Version:
    from airflow import __version__ as airflow_version

    return Version(airflow_version)


AIRFLOW_VERSION: Version = _installed_airflow_version()


class UntestedAirflowVersion(settings.KestraConfigError):
    """The installed Airflow is outside :data:`TESTED_AIRFLOW_RANGE`."""


def is_tested(version: Version) -> bool:
    """Whether ``version`` is in the tested range; a pre-release or dev build counts as its release
    (3.3.3rc1 as 3.3.3, 3.4.0.dev0 as 3.4.0)."""
    return Version(version.base_version) in TESTED_AIRFLOW


def _outside(version: Version) -> str:
    return (
        f"Airflow {version} is outside the range airflow-kestra-provider {__version__} is tested with "
        f"(apache-airflow{TESTED_AIRFLOW_RANGE})"
    )


def untested_message(component: str, version: Version) -> str:
    """The one-line error: both versions, and the option that allows starting anyway."""
    return (
        f"{_outside(version)}, so {component} does not start: install a tested Airflow, or set "
        f"{OPTION} = True ({OPTION_ENV}=True) to start it anyway"
    )


def check_airflow_version(component: str) -> None:
    """Raise :class:`UntestedAirflowVersion` (one line, naming both versions and the option) when
    the installed Airflow is outside the tested range; with ``[kestra] allow_untested_airflow``
    set, log that as a warning and return."""
    version = AIRFLOW_VERSION
    if is_tested(version):
        return
    if settings.allow_untested_airflow():
        log.warning("%s; %s starts anyway because %s is set", _outside(version), component, OPTION)
        return
    raise UntestedAirflowVersion(untested_message(component, version))


if __name__ == "__main__":  # `python -m airflow_kestra_provider.version_compat --lowest`
    import sys

    if sys.argv[1:] != ["--lowest"]:
        sys.exit("usage: python -m airflow_kestra_provider.version_compat --lowest")
    print(lowest_tested())
