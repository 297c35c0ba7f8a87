"""Shared fixtures: offline hygiene and one Prefect test harness per session."""

from __future__ import annotations

import os
import tempfile

import pytest

# Set before prefect or mlflow is imported anywhere in the test session.
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
# Hugging Face libraries read these at import time: no test may reach the hub, whatever it imports first
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# tracebacks of users' errors (tasks/errors.py) go to a scratch file, not the user's ~/.cache
# what the project remembers between commands (tokenizer folders that passed their check) starts empty
os.environ.setdefault("PRETRAINFLOW_CACHE_DIR", tempfile.mkdtemp(prefix="pretrainflow-tests-cache-"))
os.environ.setdefault("PRETRAINFLOW_ERROR_LOG", os.path.join(tempfile.gettempdir(), f"pretrainflow-tests-{os.getpid()}",
                                                             "errors.log"))


@pytest.fixture(scope="session")
def prefect_harness():
    """A real, temporary Prefect API (SQLite) for the tests that run flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
