"""flows/signals.py: a SIGTERM whose exception was swallowed (raised inside a finalizer) is delivered again."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import signal, time
from flows.signals import redeliver_swallowed_sigterm

def stop(signum, frame):
    raise SystemExit(128 + signum)  # as the CLI's handler does

signal.signal(signal.SIGTERM, stop)
redeliver_swallowed_sigterm()

class Finalized:
    def __del__(self):
        signal.raise_signal(signal.SIGTERM)  # handled in here: its SystemExit is swallowed

Finalized()
time.sleep(10)
print("carried on as if never stopped")
"""


def test_a_stop_raised_inside_a_finalizer_still_ends_the_process_quietly():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 143, done.stdout + done.stderr
    assert "carried on" not in done.stdout and "Traceback" not in done.stderr
