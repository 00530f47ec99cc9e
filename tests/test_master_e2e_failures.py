"""caravand, as real processes, against failures of its machine's setup and of SWF (issues 7 and 8).

Each starts a real master against the session's moto server (or a scripted
endpoint) and waits on its log with a deadline.
"""

from __future__ import annotations

import pytest
from helpers import wait_for
from test_master_e2e import (  # noqa: F401 - fixtures
    caravand,
    demo_pool,
    master_env,
    write_ini,
)

pytestmark = pytest.mark.e2e


def test_partial_credentials_are_one_line_in_the_registrar_and_the_children(caravand, endpoint, tmp_path):
    """Only AWS_ACCESS_KEY_ID set: each process says so in one line, and the pool gives up, never a traceback."""
    ini = write_ini(tmp_path / "caravan.ini", endpoint, demo_pool("demo", "Partial"))
    env = master_env()
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    master = caravand(ini, env=env)
    wait_for(lambda: master.output().count("failed to boot: demo#1: ") >= 2, 30, message="two failed boots")
    log = master.output()
    assert "Traceback" not in log, log
    failed = next(line for line in log.splitlines() if "failed to boot: demo#1: " in line)
    assert "incomplete AWS credentials" in failed and "missing: AWS_SECRET_ACCESS_KEY" in failed, failed
    registration = next(line for line in log.splitlines() if "registration failed: demo" in line)
    assert "credentials" in registration
