"""The one place that talks to boto3: clients, retries, paging and errors.

Clients come from boto3's standard chain (environment variables, ``~/.aws``
files, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL_SWF``) plus the explicit overrides
of an :class:`Endpoint`. Two kinds of client exist because SWF has two kinds
of call:

- a *poll* (``PollForDecisionTask``, ``PollForActivityTask``) is held open by
  SWF for up to 60 s, so its read timeout must be longer than that, and it is
  never retried by botocore: a retried poll could hand a task to a connection
  nobody reads any more, and the caller's loop knows better when to poll again;
- every other call uses botocore's ``standard`` retry mode (exponential backoff
  with jitter and a retry quota) and short timeouts, so that an unreachable
  endpoint fails in seconds instead of hanging.

Every botocore error is turned into an :class:`SWFError` whose one-line text
names the operation, the error code and SWF's message.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import random
import re
import threading
import time

import boto3
import botocore.config
import botocore.exceptions

log = logging.getLogger(__name__)

#: SWF holds a poll for up to 60 s (botocore's default read timeout is 60 s, too short).
SWF_POLL_HOLD = 60.0
#: A poll's read timeout is the endpoint's hold plus this margin for a slow network.
POLL_READ_MARGIN = 10.0
#: The read timeout of a poll on real SWF.
POLL_READ_TIMEOUT = SWF_POLL_HOLD + POLL_READ_MARGIN
#: Other calls answer at once; a read that takes this long means trouble.
CALL_READ_TIMEOUT = 20
#: With 3 attempts, an unreachable endpoint fails in about 15 s at worst.
CONNECT_TIMEOUT = 4
CALL_MAX_ATTEMPTS = 3
#: The shortest timeouts a call gets however little time is left: less could not even connect.
MIN_CONNECT_TIMEOUT = 0.25
MIN_READ_TIMEOUT = 0.5
#: Error codes that mean "slow down": throttling, or a quota reached (too many idle pollers).
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "LimitExceededFault",
        "LimitExceededException",
    }
)
#: Error codes of a call that may pass when tried again (botocore's transient codes, and SWF's 5xx names).
TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete", "InternalFailure", "ServiceUnavailable"}
)
#: What botocore raises when the network, not SWF, failed: the request may pass when tried again.
CONNECTION_ERRORS = (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)

#: Region used when the endpoint is the embedded emulator and none is set.
EMBEDDED_REGION = "us-east-1"
#: The emulator checks no signature, but botocore refuses to sign without keys.
EMBEDDED_CREDENTIALS = {"aws_access_key_id": "caravand", "aws_secret_access_key": "caravand"}

#: SWF's size limits (Amazon SWF quotas and the API model), in characters.
MAX_INPUT = 32768  # input, result, signal input, details
MAX_REASON = 256
MAX_IDENTITY = 256
MAX_HEARTBEAT_DETAILS = 2048
MAX_NAME = 256  # workflow id, signal name, tag, type name and version
MAX_TAGS = 5

CREDENTIALS_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or write them in ~/.aws/credentials"
)
REGION_HELP = "set AWS_DEFAULT_REGION, region in ~/.aws/config, or --region"


class CaravanError(Exception):
    """An error the user can act on: printed as one line, never a traceback.

    ``exit_code`` follows the documented convention: 1 the request failed
    (SWF refused it or could not be reached), 2 usage, 78 configuration.
    """

    exit_code = 1


class UsageError(CaravanError):
    """The command line asks for something impossible."""

    exit_code = 2


class ConfigError(CaravanError):
    """The configuration (ini, credentials, region, profile) is unusable."""

    exit_code = 78


class SWFError(CaravanError):
    """An SWF operation failed; ``code`` is SWF's error code (a fault name).

    ``status`` is the answer's HTTP status, or None when no answer came
    (a connection error or a timeout, whose ``code`` is botocore's name for it).
    """

    def __init__(self, operation: str, code: str, message: str, status: int | None = None):
        self.operation = operation
        self.code = code
        self.message = message
        self.status = status
        super().__init__(f"{operation} failed: {code}: {message}")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where and as whom to reach SWF; ``None`` means "boto3's chain decides".

    ``embedded`` marks the local emulator: it gets a default region and dummy
    credentials so that a fresh machine with no AWS setup can use it.
    ``poll_hold`` is how long the endpoint may hold an empty poll: 60 s on
    SWF; an endpoint known to answer sooner (a test's emulator) may say so,
    and the poll's read timeout and a stop's shortest deadline follow it.
    """

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    embedded: bool = False
    poll_hold: float = SWF_POLL_HOLD

    @property
    def poll_read_timeout(self) -> float:
        """The read timeout of a poll: the hold and a margin, so that a held poll is never cut."""
        return self.poll_hold + POLL_READ_MARGIN

    def with_overrides(self, **overrides) -> Endpoint:
        """A copy where every override that is not None replaces our value."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **changes)


def make_session(endpoint: Endpoint) -> boto3.Session:
    """A boto3 session for ``endpoint``; raises ConfigError for a bad profile."""
    credentials = EMBEDDED_CREDENTIALS if endpoint.embedded else {}
    try:
        session = boto3.Session(
            aws_access_key_id=credentials.get("aws_access_key_id"),
            aws_secret_access_key=credentials.get("aws_secret_access_key"),
            profile_name=endpoint.profile,
        )
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigError(f"{exc}: check --profile, AWS_PROFILE and ~/.aws/config") from None
    return session


def warm_session(endpoint: Endpoint) -> boto3.Session:
    """A session whose loader has read everything an SWF client needs: for a master to share before fork.

    The service model alone is not enough: the first client also reads the
    endpoint rules, partitions and retry config (~45 ms). Building one client
    of each kind and closing it caches all of that in the session; a forked
    child then builds its clients in a few ms. No request is made, so no
    connection exists to be inherited.
    """
    session = make_session(endpoint)
    for poll in (False, True):
        make_client(endpoint, session=session, poll=poll).close()
    return session


def make_client(
    endpoint: Endpoint,
    *,
    session: boto3.Session | None = None,
    poll: bool = False,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    max_attempts: int | None = None,
):
    """An SWF client: ``poll=True`` for the long-poll calls, else for the rest.

    ``connect_timeout``, ``read_timeout`` and ``max_attempts`` replace the
    defaults of that kind of client (for a call that must fit a deadline).
    Build clients after ``fork()``, never before: a boto3 client holds a
    connection pool that must not be shared between processes.
    """
    session = session or make_session(endpoint)
    region = endpoint.region or session.region_name
    if region is None and endpoint.embedded:
        region = EMBEDDED_REGION
    if region is None:
        raise ConfigError(f"no AWS region: {REGION_HELP}")
    read, attempts = (endpoint.poll_read_timeout, 1) if poll else (CALL_READ_TIMEOUT, CALL_MAX_ATTEMPTS)
    config = botocore.config.Config(
        connect_timeout=CONNECT_TIMEOUT if connect_timeout is None else connect_timeout,
        read_timeout=read if read_timeout is None else read_timeout,
        retries={"total_max_attempts": attempts if max_attempts is None else max_attempts, "mode": "standard"},
    )
    try:
        client = session.client("swf", region_name=region, endpoint_url=endpoint.endpoint_url or None, config=config)
    except botocore.exceptions.BotoCoreError as exc:  # credentials are resolved here: partial ones raise
        raise translate_error(exc, "creating the SWF client") from None
    except ValueError as exc:  # botocore's own check of endpoint_url
        raise ConfigError(f"endpoint URL {endpoint.endpoint_url!r}: {flatten(exc)}") from None
    from caravand import metrics  # here: metrics imports this module

    if metrics.enabled():  # under a master that serves metrics: its calls and errors are counted
        metrics.count_api_calls(client)
    return client


def _round_down(seconds: float) -> float:
    """Whole seconds from 2 s up, quarters below: few distinct values, so few cached clients."""
    return float(math.floor(seconds)) if seconds >= 2 else math.floor(seconds * 4) / 4


def call_timeouts(budget: float) -> tuple[float, float]:
    """The (connect, read) timeouts of one attempt that together fit in ``budget`` seconds.

    Never longer than an ordinary call's, never shorter than the minimum
    ones (so a budget under their sum gets the minimum, a little over it).
    """
    connect = max(MIN_CONNECT_TIMEOUT, _round_down(min(CONNECT_TIMEOUT, budget / 4)))
    read = max(MIN_READ_TIMEOUT, _round_down(min(CALL_READ_TIMEOUT, budget - connect)))
    return connect, read


class Clients:
    """The call clients of one endpoint, built from one session and kept per timeouts and attempts.

    A client from a known session costs a few milliseconds, a session about
    50: a call that must fit a deadline (a heartbeat, a respond near its
    task's timeout) takes a one-attempt client whose timeouts fit it from
    here. Safe to use from several threads (a session is not).
    """

    #: Far more than the distinct timeouts of :func:`call_timeouts`: a bound, not a working size.
    MAX_CLIENTS = 64

    def __init__(self, endpoint: Endpoint, session: boto3.Session | None = None):
        self.endpoint = endpoint
        self.session = session or make_session(endpoint)
        self._clients: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def get(self, *, connect_timeout: float, read_timeout: float, max_attempts: int = 1):
        """A client with these timeouts and attempts, built once."""
        key = (connect_timeout, read_timeout, max_attempts)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                if len(self._clients) >= self.MAX_CLIENTS:
                    self._clients.pop(next(iter(self._clients)))
                client = self._clients[key] = make_client(
                    self.endpoint,
                    session=self.session,
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    max_attempts=max_attempts,
                )
            return client

    def within(self, budget: float):
        """A one-attempt client whose connect and read timeouts together fit in ``budget`` seconds."""
        connect, read = call_timeouts(budget)
        return self.get(connect_timeout=connect, read_timeout=read)


def api_name(client, method: str) -> str:
    """``describe_domain`` -> ``DescribeDomain``, as SWF names its operations."""
    return client.meta.method_to_api_mapping.get(method, method)


def translate_error(exc: Exception, operation: str) -> CaravanError:
    """Map a botocore/boto3 exception to a one-line CaravanError."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "Unknown"
        message = error.get("Message") or exc.response.get("message") or "no message"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return SWFError(operation, code, one_line(message), status)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ConfigError(f"{operation}: no AWS credentials found: {CREDENTIALS_HELP}")
    if isinstance(exc, botocore.exceptions.PartialCredentialsError):
        return ConfigError(f"{operation}: incomplete AWS credentials ({exc}): {CREDENTIALS_HELP}")
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return ConfigError(f"{operation}: no AWS region: {REGION_HELP}")
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        # botocore's report spans lines; keep the first useful ones on one.
        detail = flatten(exc)
        return UsageError(f"{operation}: {detail}")
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return SWFError(operation, "EndpointConnectionError", f"cannot reach {exc.kwargs.get('endpoint_url')}")
    if isinstance(exc, botocore.exceptions.ConnectTimeoutError | botocore.exceptions.ReadTimeoutError):
        return SWFError(operation, type(exc).__name__, one_line(str(exc)))
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return SWFError(operation, type(exc).__name__, one_line(str(exc)))
    raise TypeError(f"not a botocore error: {exc!r}")


def flatten(text) -> str:
    """``text`` on one line: every run of whitespace, newlines included, becomes one space."""
    return " ".join(str(text).split())


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line, markup dropped, cut at ``limit`` characters.

    A proxy or an emulator may answer an error with a whole HTML page.
    """
    text = flatten(re.sub(r"<[^>]+>", " ", str(text)))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_retryable(exc: Exception) -> bool:
    """True for an error that the same call may not meet again: throttling, a 5xx, the network.

    Takes a botocore exception or the CaravanError made of one. Validation,
    access denied, an unknown resource or a bad configuration are not
    retryable: no later attempt can fix them.
    """
    if isinstance(exc, CONNECTION_ERRORS):
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    elif isinstance(exc, SWFError):
        if isinstance(exc.__cause__, CONNECTION_ERRORS):
            return True
        code, status = exc.code, exc.status
        # Made without its cause (a test, a copy): botocore's name of a network error.
        if status is None and code in _CONNECTION_ERROR_NAMES:
            return True
    else:
        return False
    return code in THROTTLING_CODES or code in TRANSIENT_CODES or (status is not None and status >= 500)


def _subclass_names(classes) -> frozenset[str]:
    names, todo = set(), list(classes)
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return frozenset(names)


_CONNECTION_ERROR_NAMES = _subclass_names(CONNECTION_ERRORS)


def _drop_none(params: dict) -> dict:
    return {k: v for k, v in params.items() if v is not None}


def call(client, method: str, **params) -> dict:
    """``client.<method>(**params)`` with None params left out and errors translated."""
    try:
        return getattr(client, method)(**_drop_none(params))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise translate_error(exc, api_name(client, method)) from exc


def paginate(client, method: str, result_key: str, **params):
    """Yield every item of ``result_key`` across all pages (until no nextPageToken).

    Uses botocore's paginators where SWF has one; the operation and error
    handling are the same as :func:`call`.
    """
    params = _drop_none(params)
    operation = api_name(client, method)
    try:
        if client.can_paginate(method):
            for page in client.get_paginator(method).paginate(**params):
                yield from page.get(result_key, [])
            return
        token = None
        while True:
            page = getattr(client, method)(**params, **({"nextPageToken": token} if token else {}))
            yield from page.get(result_key, [])
            token = page.get("nextPageToken")
            if not token:
                return
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise translate_error(exc, operation) from exc


#: The most a command-line call may take, its retries included: an endpoint
#: that accepts connections and never answers fails in this long.
CALL_BUDGET = 15.0
#: Pauses between the attempts of a bounded call: full jitter, capped.
BOUNDED_BACKOFF_BASE = 0.5
BOUNDED_BACKOFF_CAP = 2.0


class BoundedClient:
    """An SWF client whose every call ends within ``budget`` seconds, retries included.

    Each attempt is made on a one-attempt client of ``clients`` whose
    timeouts fit the time left (:meth:`Clients.within`); an error that may
    pass when tried again (throttling, a 5xx, the network, a timeout) is
    retried after a jittered pause, at most ``attempts`` times in all, while
    time is left. So an endpoint that accepts connections and never answers
    fails in ``budget`` seconds, not in botocore's attempts x (connect + read).

    Methods raise CaravanError (an SWFError names the operation), never a
    botocore exception. It has no paginators, so :func:`paginate` pages by
    hand and each page is one bounded call.
    """

    def __init__(
        self,
        clients: Clients,
        budget: float = CALL_BUDGET,
        *,
        attempts: int = CALL_MAX_ATTEMPTS,
        clock=time.monotonic,
        sleep=time.sleep,
        rng=random.random,
    ):
        self.clients = clients
        self.budget = budget
        self.attempts = attempts
        self.clock = clock
        self.sleep = sleep
        self.rng = rng

    @property
    def meta(self):
        return self.clients.within(self.budget).meta

    def can_paginate(self, method: str) -> bool:
        return False

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in self.meta.method_to_api_mapping:
            raise AttributeError(name)
        return functools.partial(self.invoke, name)

    def invoke(self, method: str, **params) -> dict:
        """``method(**params)``, tried until it passes, fails for good, or the budget is spent."""
        operation = api_name(self, method)
        began = self.clock()
        deadline = began + self.budget
        attempt = 0
        while True:
            attempt += 1
            client = self.clients.within(deadline - self.clock())
            try:
                return getattr(client, method)(**params)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                error = translate_error(exc, operation)
                if not is_retryable(exc):
                    raise error from exc
                assert isinstance(error, SWFError)  # what a retry may fix is SWF's answer or the network
                pause = self.rng() * min(BOUNDED_BACKOFF_CAP, BOUNDED_BACKOFF_BASE * 2 ** (attempt - 1))
                left = deadline - self.clock() - pause
                if attempt >= self.attempts or left < MIN_CONNECT_TIMEOUT + MIN_READ_TIMEOUT:
                    spent = self.clock() - began
                    tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                    raise SWFError(
                        error.operation, error.code, f"{error.message} (gave up after {tries} in {spent:.0f} s)",
                        error.status,
                    ) from exc  # fmt: skip
                log.info("%s (attempt %d, retry in %.2f s)", error, attempt, pause)
                self.sleep(pause)
