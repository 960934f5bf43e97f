# SPDX-License-Identifier: Apache-2.0
"""Process entry: the lifecycle's hot commands without click, everything else through it.

podman, conmon and containerd call create/start/state/kill/delete/run for every container,
exec for every probe and --version to report the runtime; importing click costs ~16 ms of
each call. Those commands, in the forms engines send, are parsed here from the declaration
in `commands.py`; any other shape (help, an unknown option, a value click would refuse,
another command) goes to click in `app.py`, which is built from the same declaration and
owns every usage error. Both paths share `guarded()`: one error line in the `--log` file,
the exit status from the exception.
"""

from __future__ import annotations

import os
import sys

from oci_systemd.cli import commands as table
from oci_systemd.errors import OciSystemdError
from oci_systemd.runtime.log import log

TYPE_CHECKING = False  # typing and collections.abc cost ~8 ms: annotations only
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from oci_systemd.runtime.lifecycle import Runtime


class _NotFast(Exception):
    """This command line is click's to parse (or to reject with its usage error)."""


def _parse(
    args: list[str], command: table.Command, *, stop_at_positional: bool
) -> tuple[dict[str, Any], list[str]]:
    """`command`'s options by dest, and its words; _NotFast for whatever click must judge.

    Only the forms click reads the same way are taken: `--name value`, `--name=value`, a
    short `-x value`; anything else (clusters like `-fa`, `-bDIR`, `-b=DIR`, help, an unknown
    option, a value click's type would refuse) goes to click, which owns the errors.
    """
    values: dict[str, Any] = {}
    words: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            words.extend(args[i + 1 :])
            break
        if not arg.startswith("-") or arg == "-":
            if stop_at_positional:
                return values, words + args[i:]
            words.append(arg)
            i += 1
            continue
        # click splits at "=" only long options: `-b=x` is -b with the value "=x".
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        opt = command.option(name)
        if opt is None:
            raise _NotFast
        if not opt.takes_value:
            if eq:
                raise _NotFast  # click: "does not take a value"
            values[opt.dest] = True
        else:
            if not eq:
                i += 1
                if i >= len(args):
                    raise _NotFast
                value = args[i]
            converted = _convert(opt, value)
            if opt.multiple:
                values.setdefault(opt.dest, []).append(converted)
            else:
                values[opt.dest] = converted
        i += 1
    return values, words


def _convert(opt: table.Option, value: str) -> str | int:
    """The value as click's type gives it, for the canonical spellings only."""
    kind = opt.kind
    if kind == "str":
        return value
    if kind == "choice" and value in opt.choices:
        return value
    digits = value[1:] if kind == "int" and value.startswith("-") else value
    if kind in ("int", "uint") and digits.isascii() and digits.isdigit():
        return int(value)
    raise _NotFast


def _complete(command: table.Command, values: dict[str, Any], words: list[str]) -> dict[str, Any]:
    """Every option and argument of `command`, as click passes them to the command's body:
    environment variables and defaults filled in, repeated options as tuples."""
    for opt in command.options:
        if opt.dest in values:
            if opt.multiple:
                values[opt.dest] = tuple(values[opt.dest])
        elif opt.envvar and os.environ.get(opt.envvar):  # click ignores an empty variable
            values[opt.dest] = _convert(opt, os.environ[opt.envvar])
        elif opt.multiple:
            values[opt.dest] = ()
        else:
            values[opt.dest] = False if not opt.takes_value else opt.default
    i = 0
    for arg in command.arguments:
        if arg.variadic:
            values[arg.name] = tuple(words[i:])
            i = len(words)
        elif i < len(words):
            values[arg.name] = words[i]
            i += 1
        elif arg.required:
            raise _NotFast  # click: "Missing argument"
        else:
            values[arg.name] = arg.default
    if i < len(words):
        raise _NotFast  # click: "Got unexpected extra argument"
    return values


def _dispatch(argv: list[str]) -> int | None:
    """Run a hot command; None when click must handle this command line."""
    try:
        given, rest = _parse(argv, table.GLOBAL, stop_at_positional=True)
        if given.get("version"):  # click's --version is eager: it wins over what follows
            return _print_version()
        if not rest or rest[0] not in _HANDLERS:
            return None
        command = table.COMMANDS[rest[0]]
        values, words = _parse(rest[1:], command, stop_at_positional=not command.interspersed)
        args = _complete(command, values, words)
        glob = _complete(table.GLOBAL, given, [])
    except _NotFast:
        return None
    if command.name == "exec" and (args["process_file"] is None or args["command"]):
        return None  # the process on the command line, with flags: click's
    log.configure(glob["log_target"], glob["log_format"], debug=glob["debug"])

    from oci_systemd.runtime.lifecycle import Runtime

    rt = Runtime(root=glob["root"], systemd_cgroup=glob["systemd_cgroup"], rootless_flag=glob["rootless"])
    return _HANDLERS[command.name](rt, args)


def _print_version() -> int:
    from oci_systemd.cli import version

    sys.stdout.write(version.text() + "\n")
    return 0


# The commands' bodies on the fast path; app.py has click's. The arguments are the table's
# dests, exactly what click passes (tests/unit/test_cli_parity.py compares the calls).


def _state(rt: Runtime, a: dict[str, Any]) -> int:
    from oci_systemd import jsonio

    sys.stdout.write(jsonio.dumps(rt.state(a["container_id"]), indent=2) + "\n")
    return 0


def _start(rt: Runtime, a: dict[str, Any]) -> int:
    rt.start(a["container_id"])
    return 0


def _kill(rt: Runtime, a: dict[str, Any]) -> int:
    rt.kill(a["container_id"], a["signal"], all_processes=a["all_"])
    return 0


def _delete(rt: Runtime, a: dict[str, Any]) -> int:
    rt.delete(a["container_id"], force=a["force"])
    return 0


_CREATE_ARGS = ("bundle", "console_socket", "pid_file", "no_pivot", "no_new_keyring", "preserve_fds")


def _create(rt: Runtime, a: dict[str, Any]) -> int:
    rt.create(a["container_id"], **{k: a[k] for k in _CREATE_ARGS})
    return 0


def _run(rt: Runtime, a: dict[str, Any]) -> int:
    kwargs = {k: a[k] for k in _CREATE_ARGS}
    return int(rt.run(a["container_id"], detach=a["detach"], keep=a["keep"], **kwargs))


def _exec(rt: Runtime, a: dict[str, Any]) -> int:
    from oci_systemd.runtime import exec_process

    process = exec_process.load_process_file(a["process_file"])
    return rt.exec(
        a["container_id"],
        process,
        detach=a["detach"],
        pid_file=a["pid_file"],
        console_socket=a["console_socket"],
        preserve_fds=a["preserve_fds"],
    )


_HANDLERS: dict[str, Callable[[Runtime, dict[str, Any]], int]] = {
    "state": _state,
    "start": _start,
    "kill": _kill,
    "delete": _delete,
    "create": _create,
    "run": _run,
    "exec": _exec,  # in the form containerd's shim and conmon send: --process, no command words
}


def guarded(body: Callable[[], int | None], *, quick_exit: bool = False) -> NoReturn:
    """Run `body` and exit: its status, or the error's with one log record.

    quick_exit: leave with os._exit once the output is flushed, when nothing else could
    still need the interpreter (see `_exit`).
    """
    try:
        status = body()
    except OciSystemdError as exc:
        _fail(exc, quick_exit)
    except KeyboardInterrupt:
        sys.exit(130)
    except PermissionError as exc:  # not a bug: a user without rights on --root, say
        _fail(_permission_error(exc), quick_exit)
    except Exception as exc:  # a bug: still one error line for podman/containerd, then the trace
        log.error(f"internal error: {type(exc).__name__}: {exc}")
        import traceback

        traceback.print_exc()
        sys.exit(1)
    _exit(status or 0, quick_exit)


def _fail(exc: OciSystemdError, quick_exit: bool) -> NoReturn:
    log.error(exc.message)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)
    if log.debug_enabled:
        import traceback

        traceback.print_exc()
    _exit(exc.exit_code, quick_exit)


def _permission_error(exc: PermissionError) -> OciSystemdError:
    """runc's wording (`open /run/runc/c1: permission denied`), without the call's name."""
    where = f"{exc.filename}: " if isinstance(exc.filename, str) else ""
    return OciSystemdError(f"{where}permission denied", hint="run as root, or pass a --root you may write")


def _exit(status: int, quick: bool) -> NoReturn:
    """Exit; quickly (no interpreter finalization) when allowed and safe.

    Finalization tears down every module, the ctypes library and the D-Bus connection:
    ~3 ms of each short command, for nothing the kernel would not do at exit anyway. It is
    skipped only when the output is flushed, no other thread runs (`run`'s relays must
    finish) and no atexit handler waits.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        status = status or 1
        quick = False
    if quick and _nothing_pending():
        os._exit(status)
    sys.exit(status)


def _nothing_pending() -> bool:
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return False
    import atexit

    return atexit._ncallbacks() == 0


def main(argv: list[str] | None = None) -> NoReturn:
    """The console script's entry. Called with `argv` (tests, other Python code) it always
    exits through SystemExit, which a caller can catch."""
    args = sys.argv[1:] if argv is None else argv
    if argv is None:
        # A command lives for tens of milliseconds and frees its objects by reference counting:
        # the cyclic collector's passes, set off by the allocations of importing ~20 modules,
        # cost `delete` ~3-4 ms (measured, docs/performance.md). Verbs that stay (a foreground
        # run or exec, events) switch it back on before they wait (signals.py, inspect.py).
        import gc

        gc.disable()

    def body() -> int | None:
        status = _dispatch(args)
        if status is None:
            import gc

            from oci_systemd.cli import app as cli

            gc.enable()  # click, and the long-lived commands behind it (sandbox, events)
            return cli.run_click(args)
        return status

    guarded(body, quick_exit=argv is None)
