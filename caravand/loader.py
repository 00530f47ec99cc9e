"""Finding the Workflow and Activity classes that a pool serves.

A module contributes the concrete subclasses of the wanted base that it
defines itself (not those it imports), so decider and activity modules never
need to import each other, and a shared base class is never served twice.

Also here: putting a pool's ``pythonpath`` on ``sys.path``, and checking
that every pool's modules import, in a throwaway child (``caravand
--check``, start and reload), so that the master never imports them itself
unless ``preload`` asks it to.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import select
import signal
import site
import sys
import sysconfig
import time
from typing import Protocol, TypeGuard

from caravand.contracts import optional
from caravand.swf import CaravanError, ConfigError, flatten

#: What an unfindable module's message tells caravand's users to do; the
#: foreground commands pass their own (``--pythonpath``).
IMPORT_HINT = "set pythonpath in [caravand] or install the package"
#: How long the throwaway child may take to import every pool's modules.
IMPORT_CHECK_TIMEOUT = 120.0
#: The check's one-line error, as the child sends it back.
MAX_CHECK_MESSAGE = 4000


def add_to_sys_path(dirs) -> None:
    """Put ``dirs`` first on ``sys.path``, in their order and each once (as gunicorn's ``--pythonpath``)."""
    dirs = [str(d) for d in dirs]
    if not dirs:
        return
    sys.path[:] = dirs + [entry for entry in sys.path if entry not in dirs]
    importlib.invalidate_caches()


@contextlib.contextmanager
def sys_path_added(dirs):
    """``dirs`` first on ``sys.path`` for the ``with`` block only."""
    saved = list(sys.path)
    add_to_sys_path(dirs)
    try:
        yield
    finally:
        sys.path[:] = saved


def searched(name: str) -> str:
    """Where ``import name`` looked, shortened: the user's directories, then the standard library and site-packages.

    For ``pkg.mod`` whose package imported, that is the package's directories.
    """
    parent = sys.modules.get(name.rpartition(".")[0]) if "." in name else None
    if parent is not None and getattr(parent, "__path__", None):
        return ", ".join(os.path.abspath(entry) for entry in parent.__path__)
    standard = _standard_directories()
    own = []
    for entry in sys.path:
        entry = os.path.abspath(entry or os.curdir)  # '' is the working directory
        if entry in own or not os.path.isdir(entry) or any((entry + os.sep).startswith(d) for d in standard):
            continue
        own.append(entry)
    return ", ".join([*own, "the standard library and site-packages"])


def _standard_directories() -> set[str]:
    """Python's own: the standard library, site-packages, and the scripts' directory (each ending in os.sep)."""
    paths = sysconfig.get_paths()
    directories = [paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib", "scripts")]
    with contextlib.suppress(AttributeError):  # an old virtualenv's site module lacks it
        directories += site.getsitepackages()
    return {os.path.abspath(d) + os.sep for d in directories if d}


def not_found(name: str, hint: str = IMPORT_HINT) -> str:
    """``cannot import module 'x' (searched: /srv/app, ...): <hint>``, on one line."""
    return f"cannot import module {name!r} (searched: {searched(name)}): {hint}"


class Served(Protocol):
    """A class a pool serves, a Workflow or an Activity: SWF knows it by its name and version."""

    name: str | None
    version: str | None


def concrete(cls: object, base: type) -> TypeGuard[type[Served]]:
    """A class to serve: a subclass of ``base`` with a name and a version, not abstract."""
    return (
        inspect.isclass(cls)
        and issubclass(cls, base)
        and cls is not base
        and not inspect.isabstract(cls)
        and bool(getattr(cls, "name", None))
        and bool(getattr(cls, "version", None))
    )


def import_module(name: str, hint: str = IMPORT_HINT):
    """Import ``name``; any failure becomes a one-line ConfigError naming the module.

    A module that is nowhere to be found says where it was looked for, and
    ``hint`` (how to make it found); a module that fails as it imports says how.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(f"{exc.name}.")):
            raise ConfigError(not_found(name, hint)) from exc
        raise ConfigError(f"cannot import module {name!r}: {type(exc).__name__}: {flatten(exc)}") from exc
    except Exception as exc:  # an import can raise anything; report it, don't crash
        detail = flatten(exc)  # one line, whatever the module raised
        raise ConfigError(f"cannot import module {name!r}: {type(exc).__name__}: {detail}") from exc


def load_classes(module_names: list[str], base, hint: str = IMPORT_HINT) -> dict[tuple[str, str], type]:
    """``{(name, version): class}`` of every concrete ``base`` defined in the modules.

    Raises ConfigError for an unimportable module, a module that defines no
    such class, or two classes with one (name, version).
    """
    found: dict[tuple[str, str], type] = {}
    for module_name in module_names:
        module = import_module(module_name, hint)
        classes = [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__ and concrete(cls, base)
        ]
        if not classes:
            raise ConfigError(f"module {module_name!r} defines no {base.__name__} class with a name and a version")
        for cls in classes:
            key = (str(cls.name), str(cls.version))
            if key in found and found[key] is not cls:
                other = found[key]
                raise ConfigError(
                    f"{base.__name__} {key[0]} {key[1]} is defined twice: "
                    f"{other.__module__}.{other.__qualname__} and {cls.__module__}.{cls.__qualname__}"
                )
            found[key] = cls
    return found


# -- checking a configuration's pools: their modules import and define classes


def check_pool_imports(config) -> None:
    """Import every pool's modules in this process, each pool with its own pythonpath.

    Raises ConfigError ``"{path}: [pool:NAME] modules: ..."`` at the first
    module that cannot be imported or defines no class to serve. The import
    goes through the pool factory's ``preload()`` (that of the built-in
    pools imports the modules and finds their classes); a pool whose factory
    has none (``use = call:...``) is skipped. Imports stay in
    ``sys.modules``: run it in a throwaway process (as
    :func:`check_imports_in_child` does), never in the master itself.
    """
    saved = list(sys.path)
    try:
        for spec in config.pools.values():
            preload = optional(spec.factory, "preload")
            if preload is None:
                continue
            sys.path[:] = saved  # one pool's directories never find another pool's modules
            spec.apply_pythonpath()
            where = f"{config.path}: [pool:{spec.name}] modules"
            try:
                preload()
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            except (Exception, SystemExit) as exc:  # a module may raise anything, even exit
                raise ConfigError(f"{where}: {type(exc).__name__}: {flatten(exc)}") from None
    finally:
        sys.path[:] = saved


def check_imports_in_child(config, *, logging: bool = False, timeout: float = IMPORT_CHECK_TIMEOUT) -> None:
    """Run :func:`check_pool_imports` in a forked child; ConfigError here if it fails.

    The child sends its one-line error back through a pipe and leaves with
    ``os._exit``; this process imports nothing. ``logging``: apply the ini's
    logging sections in the child first (``--check``), so a broken one is
    found without configuring logging here. A child that takes longer than
    ``timeout`` seconds (a module that blocks as it imports) is killed.
    """
    if not logging and not any(optional(spec.factory, "preload") for spec in config.pools.values()):
        return  # nothing to import: no process to start
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        raise CaravanError(f"cannot fork to check the pools' modules: {exc.strerror}") from None
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(read_fd)
            code = report_pool_imports(config, write_fd, logging=logging)
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    os.close(write_fd)
    status = None
    try:
        message, status = _wait_for_check(pid, read_fd, timeout)
    finally:
        os.close(read_fd)
        if status is None or status == -1:  # interrupted, or timed out: the child goes with us
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    if status == -1:
        raise ConfigError(
            f"{config.path}: importing the pools' modules took more than {timeout:g} s (a module that waits as it "
            f"imports, on the network or a lock?)"
        )
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return
    if message:
        raise ConfigError(message)
    if os.WIFSIGNALED(status):
        how = f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    else:
        how = f"exited with code {os.WEXITSTATUS(status)}"
    raise ConfigError(f"{config.path}: importing the pools' modules: the checking process {how}")


def report_pool_imports(config, write_fd: int, *, logging: bool = False) -> int:
    """In a throwaway child: :func:`check_pool_imports`; 0, or 1 with the one-line error written to ``write_fd``.

    The child's side of both checks: ``check_imports_in_child`` (start,
    ``--check``) and the master's reload (``caravand.child.run_import_check``).
    """
    try:
        if logging:
            from caravand.config import setup_logging

            setup_logging(config)
        check_pool_imports(config)
        return 0
    except CaravanError as exc:
        message = str(exc)
    except BaseException as exc:  # whatever it is, the parent hears of it in one line
        message = f"{config.path}: checking the pools' modules: {type(exc).__name__}: {flatten(exc)}"
    message = flatten(message)
    if len(message) > MAX_CHECK_MESSAGE:
        message = message[: MAX_CHECK_MESSAGE - 3] + "..."
    data = message.encode(errors="replace")
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(write_fd, data) :]
    return 1


def _wait_for_check(pid: int, read_fd: int, timeout: float) -> tuple[str, int]:
    """The child's message and wait status (-1: still running after ``timeout``).

    Waits for the child's exit, not for the pipe's end: a process that a
    module started may hold the pipe open.
    """
    deadline = time.monotonic() + timeout
    try:
        exit_fd = os.pidfd_open(pid)  # readable once the child has exited
    except (AttributeError, OSError):  # before Linux 5.3: look at the child every 50 ms
        exit_fd = None
    chunks = []
    watched = [read_fd] + ([exit_fd] if exit_fd is not None else [])
    os.set_blocking(read_fd, False)
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                chunks.append(_read_available(read_fd))
                return b"".join(chunks).decode(errors="replace").strip(), status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "", -1
            wait = remaining if exit_fd is not None else min(remaining, 0.05)
            ready, _, _ = select.select(watched, [], [], wait)
            if read_fd in ready:
                chunk = _read_available(read_fd)
                if chunk:
                    chunks.append(chunk)
                else:  # end of file: only the exit is left to wait for
                    watched.remove(read_fd)
    finally:
        if exit_fd is not None:
            os.close(exit_fd)


def _read_available(fd: int) -> bytes:
    """What the pipe holds now, without blocking (b"" at its end)."""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks)
