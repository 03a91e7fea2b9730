"""Which executor runs the steps of a launched run: chosen by the environment, not the code.

Why: the same code location runs on a data manager's laptop (one machine: steps in local
subprocesses) and, when one machine is not enough, on several machines (steps sent through a
Celery broker to workers). That is a deployment decision, so it is made where deployments are
configured — the environment of ``dagster dev`` / the code server — and switching needs no
code edit. The broker and result-backend URLs may hold passwords: they are read from the
environment by name (``{"env": ...}`` config) when a run starts, so their values never enter
the code, the run config, the UI's resource view or the event log. See docs/scale-out.md.

Variables:

``DHSURVEY_EXECUTOR``
    ``multiprocess`` (default) or ``celery``.
``DHSURVEY_MAX_CONCURRENT``
    multiprocess only: steps at once (default 2, one per core of the reference machine).
``DHSURVEY_CELERY_BROKER``
    celery only, required: broker URL, e.g. ``redis://:password@host:6379/0``.
``DHSURVEY_CELERY_BACKEND``
    celery only: result backend URL (default: the broker URL).

Celery workers are started with ``dagster-celery worker start -A pipelines.executors``: the
``app`` attribute of this module is a Celery app built from the same variables and the same
settings as the executor, so the launching process and the workers cannot disagree.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    from celery import Celery

EXECUTORS = ("multiprocess", "celery")
BROKER_ENV = "DHSURVEY_CELERY_BROKER"
BACKEND_ENV = "DHSURVEY_CELERY_BACKEND"


def executor_name() -> str:
    """``DHSURVEY_EXECUTOR``, checked: a typo must not silently fall back to one machine."""
    name = os.environ.get("DHSURVEY_EXECUTOR", "").strip().lower() or "multiprocess"
    if name not in EXECUTORS:
        raise ValueError(f"DHSURVEY_EXECUTOR must be one of {', '.join(EXECUTORS)}, "
                         f"not {name!r}")
    return name


def _backend_env() -> str:
    return BACKEND_ENV if os.environ.get(BACKEND_ENV) else BROKER_ENV


def executor_from_env() -> dg.ExecutorDefinition:
    """The executor for runs launched from the UI, the CLI or a sensor (see module docstring).

    The demo and the tests that call ``execute_in_process`` are unaffected: in-process runs
    ignore the code location's executor.
    """
    if executor_name() == "multiprocess":
        max_concurrent = int(os.environ.get("DHSURVEY_MAX_CONCURRENT") or 2)
        return dg.multiprocess_executor.configured({"max_concurrent": max_concurrent})
    if not os.environ.get(BROKER_ENV):
        raise ValueError(f"DHSURVEY_EXECUTOR=celery needs {BROKER_ENV} (the broker URL, "
                         "e.g. redis://host:6379/0)")
    from dagster_celery import celery_executor

    # Names of variables only: Dagster resolves them when the executor starts.
    return celery_executor.configured({
        "broker": {"env": BROKER_ENV},
        "backend": {"env": _backend_env()},
    }, name="celery")


def celery_app() -> Celery:
    """The workers' Celery app: same broker, backend and settings as ``executor_from_env``."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    broker = os.environ.get(BROKER_ENV)
    if not broker:
        raise RuntimeError(f"a dhsurvey Celery worker needs {BROKER_ENV} (the broker URL)")
    executor = CeleryExecutor.for_cli(broker=broker, backend=os.environ[_backend_env()])
    app = make_app(executor.app_args())
    create_task(app)  # registers the step task ("execute_plan") the executor submits
    return app


def __getattr__(name: str) -> Any:
    """``celery -A pipelines.executors`` looks up ``app``; built only when asked, so loading
    the code location never needs a broker."""
    if name == "app":
        global app
        app = celery_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
