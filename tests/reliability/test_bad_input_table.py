"""The bad input table: a new user's mistakes, each one stderr line, its documented exit code, no traceback.

Issue 11, item 6 of the reliability suite, with the cases of issue 8 (bad
input and a new user's first hour). Every row runs an installed entry point
(``caravand``, ``caravanctl``, the seed's ``caravan-*`` and the foreground
pollers) as a real process and asserts what README.rst promises: the exit
code of its table (0 ok, 1 the request failed or could not run, 2 usage,
78 configuration), exactly one non-empty line on stderr that matches the
row's pattern, nothing on stdout, and no traceback.

A row is ``case(id, argv, code, pattern, ini=..., env=..., before=...)``:

- ``argv``: the command and its words; ``{ini}`` is the row's ini (written
  from ``ini``), ``{tmp}`` the test's directory, ``{closed}`` a loopback
  port nothing listens on, ``{busy}`` a loopback port a socket of the test
  holds, ``{locked}`` a pidfile the test holds locked, ``{file}`` a plain
  file (a path under it cannot be made).
- ``ini``: the ini's text; ``{closed}`` as above. ``BASE`` is a good ini
  whose endpoint is a closed loopback port: no row can reach past loopback,
  and a start that were not refused would find nothing to talk to.
- ``env``: changes to the test's environment (tests/conftest.py's safe AWS
  one); ``None`` unsets a name.
- ``before``: commands run first that must succeed (a domain registered).

Rows that need SWF use the ``endpoint`` fixture (a real moto server on
127.0.0.1, emptied, ``AWS_ENDPOINT_URL_SWF`` pointing at it): their ``argv``
names no endpoint. Nothing here waits on a timeout: an unreachable endpoint
is a closed port (refused at once), and each run is bounded.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field

import pytest

pytestmark = pytest.mark.e2e

#: The longest a row's process may take; every one is expected well under 3 s.
RUN_TIMEOUT = 20


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int
    pattern: str
    ini: str | None = None
    env: dict = field(default_factory=dict)
    before: tuple[tuple[str, ...], ...] = ()
    swf: bool = False  # needs the moto server (the endpoint fixture)


def case(id, argv, code, pattern, *, ini=None, env=None, before=(), swf=False):
    return pytest.param(Case(id, tuple(argv), code, pattern, ini, env or {}, tuple(before), swf), id=id)


#: A good ini (``caravand --check`` passes it); rows change one thing.
BASE = """\
[caravand]
endpoint_url = http://127.0.0.1:{closed}
poll_timeout = 1
graceful_timeout = 25
metrics_bind =

[pool:d]
use = egg:caravand#decider
domain = D
task_list = t
modules = caravand.examples.greeting
"""

REAL_SWF = "https://swf.us-east-1.amazonaws.com"


def base(*, master: str = "", pool: str = "", replace: dict | None = None, after: str = "") -> str:
    """BASE with ``master`` lines added to [caravand], ``pool`` lines to [pool:d], ``replace`` done, ``after`` appended."""
    text = BASE.replace("metrics_bind =\n", f"metrics_bind =\n{master}").replace(
        "caravand.examples.greeting\n", f"caravand.examples.greeting\n{pool}"
    )
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    return text + after


#: BASE whose pool module is one of MODULES, beside the ini under lib/, found through pythonpath.
LOCAL_MODULE = base(master="pythonpath = %(here)s/lib\n")

LOGGING = """
[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = plain
[logger_root]
level = LOUD
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = plain
[formatter_plain]
format = %(message)s
"""

NO_REGION = {"AWS_DEFAULT_REGION": None}
PARTIAL_CREDENTIALS = {"AWS_SECRET_ACCESS_KEY": None}
NO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}
CLOSED = "http://127.0.0.1:{closed}"
CTL = ("caravanctl", "-d", "D", "--endpoint-url", CLOSED)  # caravanctl whose calls could reach nothing
GREETING = ("-d", "D", "-t", "t", "-m", "caravand.examples.greeting")

CASES = [
    # -- caravand: the command line and its key=value overrides (usage: 2)
    case("caravand-no-arguments", ["caravand"], 2, r"^caravand: error: the following arguments are required: INI \(see caravand --help\)$"),
    case("caravand-unknown-flag", ["caravand", "--bogus", "{ini}"], 2, r"^caravand: error: unrecognized arguments: --bogus", ini=BASE),
    case("caravand-override-without-equals", ["caravand", "{ini}", "foo"], 2, r"override 'foo': expected key=value$", ini=BASE),
    case("caravand-override-without-key", ["caravand", "{ini}", "=x"], 2, r"override '=x': expected key=value$", ini=BASE),
    case("caravand-override-typo", ["caravand", "--check", "{ini}", "graceful_timout=300"], 2, r"override graceful_timout=300: .*did you mean graceful_timeout\?", ini=BASE),
    case("caravand-override-pool-key", ["caravand", "--check", "{ini}", "processes=3"], 2, r"override processes=3: the ini has no such \[caravand\] setting", ini=BASE),
    case("caravand-daemon-without-pidfile", ["caravand", "--daemon", "{ini}"], 2, r"^caravand: error: --daemon needs a pidfile: --pidfile PATH, or pidfile in \[caravand\]$", ini=BASE),
    # -- caravand: overrides whose value is bad (configuration: 78)
    case("caravand-override-bad-number", ["caravand", "--check", "{ini}", "graceful_timeout=abc"], 78, r"\[caravand\] graceful_timeout = 'abc': expected a number of seconds$", ini=BASE),
    case("caravand-override-bad-port", ["caravand", "--check", "{ini}", "embedded_port=70000"], 78, r"\[caravand\] embedded_port = '70000': expected a port number from 1 to 65535$", ini=BASE),
    case("caravand-override-short-poll-for-real-swf", ["caravand", "--check", "{ini}", f"endpoint_url={REAL_SWF}", "graceful_timeout=120", "poll_timeout=20"], 78, r"\[caravand\] poll_timeout = 20: SWF holds a poll 60 s", ini=BASE),
    # -- caravand: the ini file itself
    case("caravand-missing-ini", ["caravand", "{tmp}/nowhere.ini"], 78, r"^caravand: error: \S+/nowhere\.ini: no such config file$"),
    case("caravand-ini-is-a-directory", ["caravand", "--check", "{tmp}"], 78, r"^caravand: error: \S+: .*config file"),
    case("caravand-ini-not-utf8", ["caravand", "--check", "{ini}"], 78, r"caravan\.ini: cannot read: 'utf-8' codec can't decode", ini="[caravand]\nregion = \udcff\n"),
    case("caravand-ini-no-section-header", ["caravand", "--check", "{ini}"], 78, r"caravan\.ini: malformed ini: File contains no section headers", ini="endpoint_url = embedded\n" + BASE),
    case("caravand-ini-no-caravand-section", ["caravand", "--check", "{ini}"], 78, r"caravan\.ini: no \[caravand\] section$", ini=BASE[BASE.index("[pool:d]") :]),
    case("caravand-ini-unknown-section", ["caravand", "--check", "{ini}"], 78, r"\[bogus\]: unknown section \(expected \[caravand\], \[pool:NAME\] or logging\)$", ini=base(after="\n[bogus]\nfoo = 1\n")),
    case("caravand-ini-duplicate-pool", ["caravand", "--check", "{ini}"], 78, r"malformed ini: .*section 'pool:d' already exists$", ini=base(after="\n[pool:d]\nuse = egg:caravand#activity\n")),
    case("caravand-ini-unknown-master-key", ["caravand", "--check", "{ini}"], 78, r"\[caravand\] graceful_timout: unknown key \(known: ", ini=base(master="graceful_timout = 300\n")),
    case("caravand-graceful-timeout-too-short-for-swf", ["caravand", "--check", "{ini}"], 78, r"\[caravand\] graceful_timeout = 30: at least 80 s", ini=base(replace={CLOSED: REAL_SWF, "poll_timeout = 1\n": "", "graceful_timeout = 25": "graceful_timeout = 30"})),
    case("caravand-bad-timespec", ["caravand", "--check", "{ini}"], 78, r"\[caravand\] graceful_timeout = '2x': expected a number of seconds$", ini=base(replace={"graceful_timeout = 25": "graceful_timeout = 2x"})),
    case("caravand-poll-timeout-below-60-for-real-swf", ["caravand", "--check", "{ini}"], 78, r"\[caravand\] poll_timeout = 20: SWF holds a poll 60 s; a shorter one is only for a local emulator", ini=base(replace={CLOSED: REAL_SWF, "poll_timeout = 1": "poll_timeout = 20", "graceful_timeout = 25": "graceful_timeout = 120"})),
    case("caravand-endpoint-url-not-http", ["caravand", "--check", "{ini}"], 78, r"\[caravand\] endpoint_url = 'ftp://x': expected empty \(boto3's chain\), 'embedded', or an http\(s\):// URL$", ini=base(replace={CLOSED: "ftp://x"})),
    case("caravand-register-domains-not-boolean", ["caravand", "--check", "{ini}"], 78, r"\[caravand\] register_domains = 'maybe': expected true or false$", ini=base(master="register_domains = maybe\n")),
    case("caravand-max-processes-over-swf-limit", ["caravand", "--check", "{ini}"], 78, r"\[caravand\] max_processes = '5000': expected 1 to 1000", ini=base(master="max_processes = 5000\n")),
    case("caravand-pythonpath-missing", ["caravand", "--check", "{ini}"], 78, r"\[caravand\] pythonpath: \S+/nothere: no such directory$", ini=base(master="pythonpath = nothere\n")),
    case("caravand-metrics-bind-not-host-port", ["caravand", "--check", "{ini}"], 78, r"\[caravand\] metrics_bind = 'nonsense': expected HOST:PORT, such as 127\.0\.0\.1:9469$", ini=base(replace={"metrics_bind =": "metrics_bind = nonsense"})),
    case("caravand-metrics-bind-port-out-of-range", ["caravand", "--check", "{ini}"], 78, r"\[caravand\] metrics_bind = '127\.0\.0\.1:99999': expected a port number from 1 to 65535$", ini=base(replace={"metrics_bind =": "metrics_bind = 127.0.0.1:99999"})),
    case("caravand-logging-section-broken", ["caravand", "--check", "{ini}"], 78, r"caravan\.ini: logging sections: ValueError: Unknown level: 'LOUD'$", ini=base(after=LOGGING)),
    # -- caravand: the pools
    case("caravand-processes-not-a-number", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] processes: 'many': expected a whole number$", ini=base(pool="processes = many\n")),
    case("caravand-processes-negative", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] processes: '-1': expected a whole number, 0 or more$", ini=base(pool="processes = -1\n")),
    case("caravand-processes-over-max", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] processes = 5000: at most 256 per pool .*raise max_processes in \[caravand\]", ini=base(pool="processes = 5000\n")),
    case("caravand-unknown-use", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] use: Entry point 'deciders' not found in egg 'caravand'", ini=base(replace={"#decider": "#deciders"})),
    case("caravand-use-call-unknown-module", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] use: No module named 'nope'$", ini=base(replace={"egg:caravand#decider": "call:nope.pools:factory"})),
    case("caravand-pool-without-domain", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] domain: missing$", ini=base(replace={"domain = D\n": ""})),
    case("caravand-domain-with-colon", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] domain: 'a:b': SWF names may not contain ':'", ini=base(replace={"domain = D": "domain = a:b"})),
    case("caravand-task-list-arn", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] task_list: 'arn': SWF refuses the literal name 'arn'$", ini=base(replace={"task_list = t": "task_list = arn"})),
    case("caravand-on-error-unknown", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] on_error = 'explode': expected one of retry, fail$", ini=base(pool="on_error = explode\n")),
    case("caravand-unknown-pool-key", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] proceses: unknown key \(pool keys: ", ini=base(pool="proceses = 2\n")),
    case("caravand-pool-key-also-in-default", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] processes: also set in \[DEFAULT\] or on the command line", ini="[DEFAULT]\nprocesses = 2\n" + base(pool="processes = 3\n")),
    case("caravand-module-not-found", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] modules: no module named 'no_such_module_xyz' \(searched: .*\): set pythonpath in \[caravand\]", ini=base(replace={"caravand.examples.greeting": "no_such_module_xyz"})),
    case("caravand-module-syntax-error", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] modules: cannot import module 'synerr': SyntaxError: ", ini=LOCAL_MODULE.replace("caravand.examples.greeting", "synerr")),
    case("caravand-module-raises-on-import", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] modules: cannot import module 'raises': RuntimeError: boom at import$", ini=LOCAL_MODULE.replace("caravand.examples.greeting", "raises")),
    case("caravand-module-without-workflow", ["caravand", "--check", "{ini}"], 78, r"\[pool:d\] modules: module 'plain' defines no Workflow class with a name and a version$", ini=LOCAL_MODULE.replace("caravand.examples.greeting", "plain")),
    # -- caravand: a start refused for what the machine cannot give
    case("caravand-metrics-port-in-use", ["caravand", "{ini}"], 78, r"^caravand: error: metrics_bind 127\.0\.0\.1:\d+: Address already in use \(.*set metrics_bind empty", ini=base(replace={"metrics_bind =": "metrics_bind = 127.0.0.1:{busy}"})),
    case("caravand-metrics-bind-foreign-address", ["caravand", "{ini}"], 78, r"^caravand: error: metrics_bind 192\.0\.2\.1:9469: Cannot assign requested address", ini=base(replace={"metrics_bind =": "metrics_bind = 192.0.2.1:9469"})),
    case("caravand-pidfile-held", ["caravand", "--pidfile", "{locked}", "{ini}"], 1, r"^caravand: error: \S+/held\.pid is locked: caravand already runs \(pid 4242\)$", ini=BASE),
    case("caravand-pidfile-cannot-be-made", ["caravand", "--pidfile", "{file}/caravand.pid", "{ini}"], 78, r"^caravand: error: pidfile \S+/caravand\.pid: ", ini=BASE),
    case("caravand-no-region", ["caravand", "{ini}"], 78, r"^caravand: error: \S+caravan\.ini: \[caravand\] region: none set, and no AWS region in the environment: set region in \[caravand\], AWS_DEFAULT_REGION", ini=BASE, env=NO_REGION),
    case("caravand-unknown-profile", ["caravand", "{ini}"], 78, r"^caravand: error: \S+caravan\.ini: \[caravand\] profile: no AWS profile 'nosuch' in ~/.aws/config", ini=base(master="profile = nosuch\n")),
    # -- caravanctl: the command line (usage: 2)
    case("ctl-no-command", ["caravanctl"], 2, r"^caravanctl: error: the following arguments are required: COMMAND \(see caravanctl --help\)$"),
    case("ctl-unknown-command", [*CTL, "frobnicate"], 2, r"argument COMMAND: invalid choice: 'frobnicate'"),
    case("ctl-unknown-flag", [*CTL, "--bogus", "list"], 2, r"^caravanctl: error: unrecognized arguments: --bogus"),
    case("ctl-no-domain", ["caravanctl", "--endpoint-url", CLOSED, "list"], 2, r"^caravanctl: error: no domain: give -d/--domain$"),
    case("ctl-oldest-not-a-time", [*CTL, "list", "--oldest", "yesterday"], 2, r"argument --oldest: 'yesterday' is not a time: expected an ISO date"),
    case("ctl-oldest-overflows", [*CTL, "list", "--oldest", "99999999d"], 2, r"argument --oldest: '99999999d' is too far back: give a date instead"),
    case("ctl-oldest-without-value", [*CTL, "list", "--oldest"], 2, r"argument --oldest: expected one argument"),
    case("ctl-latest-impossible-date", [*CTL, "list", "--latest", "2015-13-45"], 2, r"argument --latest: '2015-13-45' is not a time"),
    case("ctl-exclusive-filters", [*CTL, "list", "--tag", "x", "--id", "y"], 2, r"--tag and --id .*cannot be used together: SWF filters by one of them$"),
    case("ctl-endpoint-url-not-a-url", ["caravanctl", "-d", "D", "--endpoint-url", "not-a-url", "list"], 2, r"argument --endpoint-url: 'not-a-url' is not an endpoint URL: expected http\(s\)://HOST\[:PORT\]"),
    case("ctl-endpoint-url-port-out-of-range", ["caravanctl", "-d", "D", "--endpoint-url", "http://127.0.0.1:99999", "list"], 2, r"argument --endpoint-url: 'http://127\.0\.0\.1:99999' is not an endpoint URL"),
    case("ctl-input-too-long", [*CTL, "start", "-n", "W", "-v", "1", "-i", "x", "--input", "x" * 40000], 2, r"argument --input: --input is 40000 characters long; SWF accepts at most 32768"),
    case("ctl-reason-too-long", [*CTL, "terminate", "-i", "x", "--reason", "r" * 300], 2, r"argument --reason: --reason is 300 characters long; SWF accepts at most 256"),
    case("ctl-bad-duration", [*CTL, "start", "-n", "W", "-v", "1", "-i", "x", "--execution-timeout", "10x"], 2, r"argument --execution-timeout: '10x' is not a duration"),
    case("ctl-bad-priority", [*CTL, "start", "-n", "W", "-v", "1", "-i", "x", "--priority", "high"], 2, r"argument --priority: 'high' is not a priority: expected an integer"),
    case("ctl-empty-workflow-version", [*CTL, "start", "-n", "W", "-v", "", "-i", "x"], 2, r"^caravanctl: error: StartWorkflowExecution: Parameter validation failed: Invalid length for parameter workflowType\.version"),
    case("ctl-retention-out-of-range", [*CTL, "domain", "register", "E", "--retention-days", "400"], 2, r"argument --retention-days: '400' is not a retention: expected 0 to 90 days, or NONE"),
    case("ctl-types-exclusive-kinds", [*CTL, "types", "list", "--workflow", "--activity"], 2, r"argument --activity: not allowed with argument --workflow"),
    case("ctl-local-endpoint-port-out-of-range", ["caravanctl", "local-endpoint", "--port", "99999"], 2, r"argument --port: '99999' is not a port: expected 0 to 65535"),
    case("ctl-status-watch-not-a-number", ["caravanctl", "status", "--watch", "abc", "--url", CLOSED], 2, r"argument --watch: 'abc' is not an interval"),
    # -- caravanctl: configuration (78)
    case("ctl-local-endpoint-port-in-use", ["caravanctl", "local-endpoint", "--port", "{busy}"], 78, r"^caravanctl: error: cannot listen on 127\.0\.0\.1:\d+: address already in use .*give --port another port"),
    case("ctl-config-missing", ["caravanctl", "-c", "{tmp}/nowhere.ini", "-d", "D", "list"], 78, r"^caravanctl: error: \S+/nowhere\.ini: no such config file$"),
    case("ctl-config-invalid", ["caravanctl", "-c", "{ini}", "list"], 78, r"\[caravand\] graceful_timeout = '2x': expected a number of seconds$", ini=base(replace={"graceful_timeout = 25": "graceful_timeout = 2x"})),
    case("ctl-status-metrics-off", ["caravanctl", "-c", "{ini}", "status"], 78, r"^caravanctl: error: metrics are off in \S+ \(metrics_bind is empty\)", ini=BASE),
    case("ctl-no-region", [*CTL, "list"], 78, r"^caravanctl: error: no AWS region: set AWS_DEFAULT_REGION", env=NO_REGION),
    case("ctl-partial-credentials", [*CTL, "list"], 78, r"incomplete AWS credentials .*missing: AWS_SECRET_ACCESS_KEY", env=PARTIAL_CREDENTIALS),
    case("ctl-no-credentials", [*CTL, "list"], 78, r"^caravanctl: error: ListOpenWorkflowExecutions: no AWS credentials found", env=NO_CREDENTIALS),
    case("ctl-unknown-profile", [*CTL, "--profile", "nosuch", "list"], 78, r"The config profile \(nosuch\) could not be found: check --profile"),
    # -- caravanctl: the request failed (1)
    case("ctl-endpoint-unreachable", [*CTL, "list"], 1, r"^caravanctl: error: ListOpenWorkflowExecutions failed: EndpointConnectionError: cannot reach http://127\.0\.0\.1:\d+/ \(gave up after 3 attempts"),
    case("ctl-status-nothing-answers", ["caravanctl", "status", "--url", CLOSED + "/metrics"], 1, r"^caravanctl: error: cannot read http://127\.0\.0\.1:\d+/metrics \(.*Connection refused\): caravand does not run there"),
    case("ctl-describe-unknown-execution", ["caravanctl", "-d", "D", "describe", "-i", "nope"], 1, r"^caravanctl: error: describe -i nope failed: UnknownResourceFault: no execution has workflow id 'nope' in domain D", before=[["caravanctl", "domain", "register", "D", "--retention-days", "1"]], swf=True),
    case("ctl-history-unknown-execution", ["caravanctl", "-d", "D", "history", "-i", "nope"], 1, r"^caravanctl: error: history -i nope failed: UnknownResourceFault: no execution has workflow id 'nope'", before=[["caravanctl", "domain", "register", "D", "--retention-days", "1"]], swf=True),
    case("ctl-unknown-domain", ["caravanctl", "-d", "Nope", "list"], 1, r"^caravanctl: error: ListOpenWorkflowExecutions failed: UnknownResourceFault: Unknown domain: Nope$", swf=True),
    case("ctl-domain-registered-twice", ["caravanctl", "domain", "register", "D", "--retention-days", "1"], 1, r"^caravanctl: error: RegisterDomain failed: DomainAlreadyExistsFault: D$", before=[["caravanctl", "domain", "register", "D", "--retention-days", "1"]], swf=True),
    case("ctl-start-unknown-type", ["caravanctl", "-d", "D", "start", "-n", "W", "-v", "1", "-i", "x"], 1, r"^caravanctl: error: StartWorkflowExecution failed: UnknownResourceFault: Unknown type: WorkflowType=\[name=W, version=1\]$", before=[["caravanctl", "domain", "register", "D", "--retention-days", "1"]], swf=True),
    case("ctl-start-wait-type-gives-up", ["caravanctl", "-d", "D", "start", "-n", "W", "-v", "1", "-i", "x", "--wait-type", "1"], 1, r"workflow type W 1 is still unknown in D after 1 s .*start a decider that serves it", before=[["caravanctl", "domain", "register", "D", "--retention-days", "1"]], swf=True),
    case("ctl-cancel-unknown-execution", ["caravanctl", "-d", "D", "cancel", "-i", "nope"], 1, r"^caravanctl: error: RequestCancelWorkflowExecution failed: UnknownResourceFault: Unknown execution, workflowId = nope$", before=[["caravanctl", "domain", "register", "D", "--retention-days", "1"]], swf=True),
    case("ctl-region-unknown-to-emulator", ["caravanctl", "--region", "bogus-1", "-d", "D", "list"], 1, r"the local SWF endpoint knows no region 'bogus-1': give an AWS region such as us-east-1$", swf=True),
    # -- the seed's commands
    case("seed-start-without-id", ["caravan-start", "-d", "D", "-n", "W", "-v", "1"], 2, r"^caravan-start: error: the following arguments are required: -i/--id \(see caravan-start --help\)$"),
    case("seed-start-bad-child-policy", ["caravan-start", "-d", "D", "-n", "W", "-v", "1", "-i", "x", "--child-policy", "KILL"], 2, r"^caravan-start: error: argument --child-policy: invalid choice: 'KILL'"),
    case("seed-start-too-many-tags", ["caravan-start", "-d", "D", "-n", "W", "-v", "1", "-i", "x", "--tag-list", "a b c d e f"], 2, r"argument --tag-list: 6 tags given; SWF accepts at most 5"),
    case("seed-signal-without-signal", ["caravan-signal", "-d", "D", "-i", "x"], 2, r"^caravan-signal: error: the following arguments are required: -s/--signal"),
    case("seed-terminate-without-id", ["caravan-terminate", "-d", "D"], 2, r"^caravan-terminate: error: the following arguments are required: -i/--id"),
    case("seed-list-bad-status", ["caravan-list", "-d", "D", "--status", "RUNNING"], 2, r"^caravan-list: error: argument --status: invalid choice: 'RUNNING'"),
    case("seed-list-version-without-name", ["caravan-list", "-d", "D", "-v", "1"], 2, r"^caravan-list: error: -v/--version needs -n/--name$"),
    case("seed-list-oldest-after-latest", ["caravan-list", "-d", "D", "--oldest", "2d", "--latest", "3d"], 2, r"^caravan-list: error: --oldest .* is after --latest "),
    case("seed-domain-register-without-name", ["caravan-domain-register", "--retention-days", "1"], 2, r"^caravan-domain-register: error: no domain name: give NAME or -n NAME$"),
    case("seed-domain-register-negative-retention", ["caravan-domain-register", "-n", "X", "--retention-days", "-1"], 2, r"argument --retention-days: '-1' is not a retention"),
    case("seed-domain-list-extra-word", ["caravan-domain-list", "--deprecated", "extra"], 2, r"^caravan-domain-list: error: unrecognized arguments: extra"),
    case("seed-domain-list-unreachable", ["caravan-domain-list", "--endpoint-url", CLOSED], 1, r"^caravan-domain-list: error: ListDomains failed: EndpointConnectionError: cannot reach"),
    case("seed-list-unknown-domain", ["caravan-list", "-d", "Nope"], 1, r"^caravan-list: error: ListOpenWorkflowExecutions failed: UnknownResourceFault: Unknown domain: Nope$", swf=True),
    # -- the foreground pollers
    case("decider-without-modules", ["caravan-decider", "-d", "D", "-t", "t"], 2, r"^caravan-decider: error: the following arguments are required: -m/--modules"),
    case("decider-without-domain", ["caravan-decider", "-t", "t", "-m", "caravand.examples.greeting"], 2, r"^caravan-decider: error: no domain: give -d/--domain$"),
    case("decider-bad-on-error", ["caravan-decider", *GREETING, "--on-error", "explode"], 2, r"argument --on-error: invalid choice: 'explode'"),
    case("decider-module-not-found", ["caravan-decider", "-d", "D", "-t", "t", "-m", "no_such_module_xyz"], 78, r"^caravan-decider: error: cannot import module 'no_such_module_xyz' \(searched: .*\): run from its directory, give --pythonpath DIR"),
    case("decider-module-syntax-error", ["caravan-decider", "-d", "D", "-t", "t", "-m", "synerr", "--pythonpath", "{tmp}/lib"], 78, r"^caravan-decider: error: cannot import module 'synerr': SyntaxError: "),
    case("decider-module-without-workflow", ["caravan-decider", "-d", "D", "-t", "t", "-m", "plain", "--pythonpath", "{tmp}/lib"], 78, r"^caravan-decider: error: module 'plain' defines no Workflow class with a name and a version$"),
    case("activity-module-raises", ["caravan-activity", "-d", "D", "-t", "t", "-m", "raises", "--pythonpath", "{tmp}/lib"], 78, r"^caravan-activity: error: cannot import module 'raises': RuntimeError: boom at import$"),
    case("activity-pythonpath-missing", ["caravan-activity", "-d", "D", "-t", "t", "-m", "plain", "--pythonpath", "{tmp}/nothere"], 78, r"^caravan-activity: error: --pythonpath \S+/nothere: no such directory$"),
    case("decider-no-region", ["caravan-decider", *GREETING, "--endpoint-url", CLOSED], 78, r"^caravan-decider: error: no AWS region: set AWS_DEFAULT_REGION", env=NO_REGION),
    case("activity-partial-credentials", ["caravan-activity", "-d", "D", "-t", "t", "-m", "caravand.examples.greeting_activities", "--endpoint-url", CLOSED], 78, r"^caravan-activity: error: creating the SWF client: incomplete AWS credentials", env=PARTIAL_CREDENTIALS),
    case("decider-endpoint-unreachable", ["caravan-decider", *GREETING, "--endpoint-url", CLOSED], 1, r"^caravan-decider: error: RegisterWorkflowType failed: EndpointConnectionError: cannot reach http://127\.0\.0\.1:\d+/ \(gave up after 3 attempts"),
    case("decider-unknown-domain", ["caravan-decider", "-d", "Nope", "-t", "t", "-m", "caravand.examples.greeting"], 1, r"^caravan-decider: error: RegisterWorkflowType failed: UnknownResourceFault: Unknown domain: Nope$", swf=True),
]  # fmt: skip

#: Modules beside the inis, under {tmp}/lib.
MODULES = {
    "synerr.py": "def broken(:\n",
    "raises.py": "raise RuntimeError('boom at import')\n",
    "plain.py": "VALUE = 1\n",
}


def closed_port() -> int:
    """A loopback port nothing listens on (bound, noted, closed): a connection to it is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def busy_port():
    """A loopback port a socket of ours listens on for the test's length."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def locked_pidfile(tmp_path):
    """A pidfile held with flock, as a running caravand holds it (its pid: 4242)."""
    path = tmp_path / "held.pid"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"4242\n")
        yield str(path)
    finally:
        os.close(fd)


def run(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    """Run an installed entry point (beside sys.executable) in a session of its own, killed whole if it overstays."""
    executable = os.path.join(os.path.dirname(sys.executable), argv[0])
    assert os.path.exists(executable), f"{argv[0]} is not installed beside {sys.executable}"
    process = subprocess.Popen(
        [executable, *argv[1:]],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # a caravand that were not refused takes its children down with it below
    )
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"{argv[0]} still ran after {RUN_TIMEOUT} s: stderr:\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def fill(word: str, values: dict) -> str:
    for name, value in values.items():
        word = word.replace("{" + name + "}", str(value))
    return word


@pytest.mark.parametrize("row", CASES)
def test_bad_input(row: Case, request, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for name, text in MODULES.items():
        (lib / name).write_text(text)
    (tmp_path / "afile").write_text("a file, not a directory\n")
    values = {"tmp": tmp_path, "closed": closed_port(), "file": tmp_path / "afile"}
    if any("{busy}" in word for word in (*row.argv, row.ini or "")):
        values["busy"] = request.getfixturevalue("busy_port")
    if any("{locked}" in word for word in row.argv):
        values["locked"] = request.getfixturevalue("locked_pidfile")
    if row.ini is not None:
        ini = tmp_path / "caravan.ini"
        # surrogateescape: a row may hold bytes that are not UTF-8 (written as they are).
        ini.write_bytes(fill(textwrap.dedent(row.ini), values).encode("utf-8", "surrogateescape"))
        values["ini"] = ini
    env = dict(os.environ)
    if row.swf:
        request.getfixturevalue("endpoint")  # sets AWS_ENDPOINT_URL_SWF in os.environ
        env = dict(os.environ)
    else:
        env.pop("AWS_ENDPOINT_URL_SWF", None)
    for name, value in row.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value

    for before in row.before:
        done = run([fill(word, values) for word in before], env)
        assert done.returncode == 0, (before, done.stderr)

    result = run([fill(word, values) for word in row.argv], env)

    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == row.code, (result.returncode, result.stderr)
    assert result.stderr.endswith("\n"), repr(result.stderr)
    lines = result.stderr[:-1].split("\n")
    assert len(lines) == 1 and lines[0].strip(), f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    assert re.search(row.pattern, lines[0]), f"{row.pattern!r} not in {lines[0]!r}"
    assert result.stdout == "", result.stdout


def test_the_table_is_as_large_as_promised():
    """Issue 11: at least 40 cases, across caravand, caravanctl, the seed's commands and the pollers; ids unique."""
    ids = [param.values[0].id for param in CASES]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
    commands = {param.values[0].argv[0] for param in CASES}
    assert {"caravand", "caravanctl", "caravan-decider", "caravan-activity"} <= commands
    assert {"caravan-start", "caravan-signal", "caravan-terminate", "caravan-list"} <= commands
    assert {"caravan-domain-register", "caravan-domain-list"} <= commands
