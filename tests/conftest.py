"""Shared fixtures: an isolated AWS environment, moto in-process and over HTTP.

Every test runs with an environment that cannot reach real AWS: no shared
credential files, no instance metadata lookups (which would leave loopback),
dummy keys and a fixed region. End-to-end tests get a real moto server on
127.0.0.1 (one per session, reset before each test, killed by PID at the end).
"""

from __future__ import annotations

import os

import pytest
from helpers import Spawned, run_cli, wait_for  # noqa: F401 - re-exported for tests

from caravand.embedded import EmbeddedEndpoint

SAFE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/caravand-tests/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/caravand-tests/credentials",
}
UNSET = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SWF", "AWS_SESSION_TOKEN", "AWS_REGION")


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    """No test ever sees the developer's AWS setup or reaches past loopback."""
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    for name, value in SAFE_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def fast_moto(monkeypatch):
    """Drop moto's 1 s sleep on an empty poll (in-process moto only)."""
    import moto.swf.models

    monkeypatch.setattr(moto.swf.models, "sleep", lambda seconds: None)


@pytest.fixture
def swf_client(aws_env):
    """An SWF client on in-process moto (``moto.mock_aws``)."""
    from moto import mock_aws

    from caravand import swf

    with mock_aws():
        yield swf.make_client(swf.Endpoint(region="us-east-1"))


@pytest.fixture(scope="session")
def moto_server():
    """One real moto server on 127.0.0.1 for the session, killed by PID at the end.

    It holds an empty poll 1 s, not SWF's 60: the tests' daemons say
    ``poll_timeout = 1`` (helpers.write_master_ini), so that a stop waits for
    a poll at most that long; their read timeout (hold + 10 s) is never reached.
    """
    endpoint = EmbeddedEndpoint(port=0, poll_hold=1)
    endpoint.start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def endpoint(moto_server, monkeypatch):
    """The moto server, emptied, and the environment pointing boto3 at it."""
    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SWF", moto_server.url)
    return moto_server


@pytest.fixture
def spawn(tmp_path):
    """Start real processes; every one is killed by PID at teardown, whatever happened."""
    started: list[Spawned] = []

    def start(*argv: str, env: dict | None = None) -> Spawned:
        proc = Spawned(list(argv), tmp_path / f"{len(started)}-{os.path.basename(argv[0])}.log", env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
