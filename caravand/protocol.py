"""The child protocol: what a child tells the master over its pipe, encoded and decoded here.

One message per line: a word, maybe one argument, and ``\\n``. Every line
is shorter than PIPE_BUF, so that a write is atomic: the lines of a
child's main thread and of its beat thread never interleave, and the master
never reads half a line from a child that lives.

    BOOTED               its poller is built: it is idle (once)
    POLLING <deadline>   in a long poll
    PAGING <deadline>    reading a further page of a decision task's history
    WORKING <deadline>   a task in hand
    IDLE                 between polls and tasks
    DONE <outcome>       a task ended (``completed``, ``failed``...): counted for max_tasks; the
                         child is idle after it (no IDLE follows: one wake-up of the master less)
    FAILED <reason>      it gives up, and exits as a failed start right after
    BEAT                 every few seconds, from a thread, whatever the main thread does
    BACKLOG <n> <pool>   from the backlog counter (caravand.backlog): the pool's pending tasks, ``-`` if
                         the count failed

``<deadline>``: the ``time.monotonic()`` value by which the child will be
done, with three decimals, or ``-`` for none. The monotonic clock is one
for every process of the machine, so the master compares it with its own.
PAGING has a deadline of its own for each page: a task that came late in a
held poll is not bound by the poll's.

Any line tells the master that the child lives. A line it cannot read
(never from our child) is ``garbled``: the master logs it and takes it as a
beat.
"""

from __future__ import annotations

import dataclasses
import select

from caravand.states import ChildState

BOOTED = "BOOTED"
POLLING = "POLLING"
PAGING = "PAGING"
WORKING = "WORKING"
IDLE = "IDLE"
DONE = "DONE"
FAILED = "FAILED"
BEAT = "BEAT"
BACKLOG = "BACKLOG"
WORDS = frozenset({BOOTED, POLLING, PAGING, WORKING, IDLE, DONE, FAILED, BEAT, BACKLOG})

#: The words that carry a deadline, and what the child then does.
BUSY = {POLLING: ChildState.POLLING, PAGING: ChildState.PAGING, WORKING: ChildState.WORKING}
BUSY_WORD = {state: word for word, state in BUSY.items()}
NO_DEADLINE = "-"
#: A line is written whole (atomically) only below this size.
PIPE_BUF = select.PIPE_BUF
#: The child cuts a FAILED reason to this many characters, for the log and STATUS.
MAX_REASON = 400


def _line(word: str, argument: str | None = None) -> bytes:
    """One line, whatever ``argument`` holds: its newlines and runs of spaces become one space."""
    text = word if argument is None else f"{word} {' '.join(argument.split())}"
    return text.encode()[: PIPE_BUF - 1] + b"\n"


def format_deadline(deadline: float | None) -> str:
    return NO_DEADLINE if deadline is None else f"{deadline:.3f}"


def booted() -> bytes:
    return _line(BOOTED)


def busy(state: ChildState, deadline: float | None) -> bytes:
    """POLLING, PAGING or WORKING, with the time by which it will be done."""
    return _line(BUSY_WORD[state], format_deadline(deadline))


def idle() -> bytes:
    return _line(IDLE)


def done(outcome: str) -> bytes:
    return _line(DONE, outcome)


def failed(reason: str) -> bytes:
    return _line(FAILED, reason)


def beat() -> bytes:
    return _line(BEAT)


def backlog(pool: str, count: int | None) -> bytes:
    """The pool's pending tasks, or None: the count failed (the counter logs why)."""
    return _line(BACKLOG, f"{NO_DEADLINE if count is None else int(count)} {pool}")


@dataclasses.dataclass(frozen=True)
class Message:
    """One line from a child, decoded."""

    word: str  # one of WORDS, or whatever a garbled line began with
    deadline: float | None = None  # POLLING, PAGING, WORKING: None for none
    text: str = ""  # DONE's outcome, FAILED's reason, BACKLOG's pool
    count: int | None = None  # BACKLOG: the pending tasks, None if the count failed
    garbled: bool = False  # an unknown word, or a deadline that is no number


def decode(line: bytes) -> Message | None:
    """The message of one line (without its ``\\n``), or None for an empty line."""
    words = line.decode(errors="replace").split()
    if not words:
        return None
    word, arguments = words[0], words[1:]
    if word in BUSY:
        if not arguments or arguments[0] == NO_DEADLINE:
            return Message(word)
        try:
            return Message(word, deadline=float(arguments[0]))
        except ValueError:
            return Message(word, garbled=True)
    if word in (DONE, FAILED):
        return Message(word, text=" ".join(arguments))
    if word == BACKLOG:
        if len(arguments) < 2:
            return Message(word, garbled=True)
        pool = " ".join(arguments[1:])
        if arguments[0] == NO_DEADLINE:
            return Message(word, text=pool)
        if not (arguments[0].isascii() and arguments[0].isdigit()):  # "²".isdigit(), and int() refuses it
            return Message(word, text=pool, garbled=True)
        return Message(word, text=pool, count=int(arguments[0]))
    return Message(word, garbled=word not in WORDS)
