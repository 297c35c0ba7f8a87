"""tasks/errors.py: users' errors told apart from bugs, and their tracebacks kept in the error log."""

import errno
from pathlib import Path

import pytest

from model.checkpoint_integrity import CheckpointError
from tasks.artifacts import ArtifactError
from tasks.config import ConfigError
from tasks.errors import ERROR_LOG_ENV, InputError, record_traceback, user_message
from tasks.stages import MissingInputError


def test_users_errors_have_a_message_and_bugs_have_none() -> None:
    assert user_message(InputError("data/a.txt: binary")) == "data/a.txt: binary"
    for err in (ConfigError("x.yaml", ["bad"]), MissingInputError("run corpus first"), ArtifactError("damaged"),
                CheckpointError("checkpoints/step-000020: model.safetensors cannot be loaded")):
        assert user_message(err) == str(err)
    full = OSError(errno.ENOSPC, "No space left on device", "/data/tokenize/.staging-1/train/tokens-00003.arrow")
    assert user_message(full).startswith(
        "no space left on the device writing /data/tokenize/.staging-1/train/tokens-00003.arrow: free disk space")
    for bug in (KeyError("k"), ValueError("a plain ValueError is a bug"), OSError(errno.EACCES, "denied"), None):
        assert user_message(bug) is None


def test_a_traceback_is_appended_to_the_error_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ERROR_LOG_ENV, str(tmp_path / "logs" / "errors.log"))
    for n in range(2):
        try:
            raise InputError(f"bad file {n}")
        except InputError as err:
            assert record_traceback(err, "pretrainflow run corpus") == tmp_path / "logs" / "errors.log"
    log = (tmp_path / "logs" / "errors.log").read_text()
    assert log.count("pretrainflow run corpus") == 2 and "InputError: bad file 1" in log and "Traceback" in log
