# SPDX-License-Identifier: Apache-2.0
"""Process entry: the lifecycle's hot commands without click, everything else through it.

podman, conmon and containerd call create/start/state/kill/delete/run for every container,
and exec for every probe;
importing click costs ~16 ms of each call. Those commands, in the forms engines send, are
parsed here; any other shape (help, an unknown option, another command) goes to click in
`cli.py`, which defines the full interface. Both paths share `guarded()`: one error line
in the `--log` file, the exit status from the exception.
"""

from __future__ import annotations

import os
import sys

from oci_systemd.errors import OciSystemdError
from oci_systemd.runtime.log import log

TYPE_CHECKING = False  # typing and collections.abc cost ~8 ms: annotations only
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

DEFAULT_ROOT = "/run/oci-systemd"

# option -> (attribute, takes a value)
_GLOBAL = {
    "--root": ("root", True),
    "--log": ("log", True),
    "--log-format": ("log_format", True),
    "--debug": ("debug", False),
    "--systemd-cgroup": ("systemd_cgroup", False),
    "--rootless": ("rootless", True),
    "--criu": ("criu", True),
}
_CREATE = {
    "--bundle": ("bundle", True),
    "-b": ("bundle", True),
    "--console-socket": ("console_socket", True),
    "--pid-file": ("pid_file", True),
    "--no-pivot": ("no_pivot", False),
    "--no-new-keyring": ("no_new_keyring", False),
    "--preserve-fds": ("preserve_fds", True),
}
_RUN = {**_CREATE, "--detach": ("detach", False), "-d": ("detach", False), "--keep": ("keep", False)}
_KILL = {"--all": ("all", False), "-a": ("all", False)}
_DELETE = {"--force": ("force", False), "-f": ("force", False)}
# exec in the form containerd's shim and conmon send: the process as a file, no command words.
_EXEC = {
    "--process": ("process", True),
    "-p": ("process", True),
    "--detach": ("detach", False),
    "-d": ("detach", False),
    # conmon adds --tty for `podman exec -t`; with --process the file says it (as in runc).
    "--tty": ("tty", False),
    "-t": ("tty", False),
    **{name: _CREATE[name] for name in ("--pid-file", "--console-socket", "--preserve-fds")},
}
_COMMANDS: dict[str, tuple[dict[str, tuple[str, bool]], int, int]] = {
    # command: (options, min positionals, max positionals)
    "state": ({}, 1, 1),
    "start": ({}, 1, 1),
    "kill": (_KILL, 1, 2),
    "delete": (_DELETE, 1, 1),
    "create": (_CREATE, 1, 1),
    "run": (_RUN, 1, 1),
    "exec": (_EXEC, 1, 1),
}


class _NotFast(Exception):
    """This command line is click's to parse."""


def _parse(
    args: list[str], table: dict[str, tuple[str, bool]], *, stop_at_positional: bool
) -> tuple[dict[str, Any], list[str]]:
    opts: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i + 1 :])
            break
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            if name not in table:
                raise _NotFast
            attr, takes_value = table[name]
            if takes_value:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise _NotFast
                    value = args[i]
                opts[attr] = value
            elif eq:
                raise _NotFast
            else:
                opts[attr] = True
        else:
            if stop_at_positional:
                return opts, args[i:]
            rest.append(arg)
        i += 1
    return opts, rest


def _dispatch(argv: list[str]) -> int | None:
    """Run a hot command; None when click must handle this command line."""
    try:
        gopts, rest = _parse(argv, _GLOBAL, stop_at_positional=True)
        if not rest or rest[0] not in _COMMANDS:
            return None
        table, lo, hi = _COMMANDS[rest[0]]
        copts, pos = _parse(rest[1:], table, stop_at_positional=False)
    except _NotFast:
        return None
    if not lo <= len(pos) <= hi or gopts.get("log_format", "text") not in ("text", "json"):
        return None
    if rest[0] == "exec" and "process" not in copts:
        return None  # the command on the command line, with flags: click's
    preserve = copts.get("preserve_fds", "0")
    if not str(preserve).isdigit():
        return None
    log.configure(gopts.get("log"), gopts.get("log_format", "text"), debug=bool(gopts.get("debug")))

    from oci_systemd.runtime.lifecycle import Runtime

    root = gopts.get("root") or os.environ.get("OCI_SYSTEMD_ROOT") or DEFAULT_ROOT  # as click's envvar
    rt = Runtime(root=root, systemd_cgroup=bool(gopts.get("systemd_cgroup")))
    command, cid = rest[0], pos[0]
    if command == "state":
        from oci_systemd import jsonio

        sys.stdout.write(jsonio.dumps(rt.state(cid), indent=2) + "\n")
    elif command == "start":
        rt.start(cid)
    elif command == "kill":
        rt.kill(cid, pos[1] if len(pos) > 1 else "TERM", all_processes=bool(copts.get("all")))
    elif command == "delete":
        rt.delete(cid, force=bool(copts.get("force")))
    elif command == "exec":
        from oci_systemd.runtime import exec_process

        process = exec_process.load_process_file(copts["process"])
        return rt.exec(
            cid,
            process,
            detach=bool(copts.get("detach")),
            pid_file=copts.get("pid_file"),
            console_socket=copts.get("console_socket"),
            preserve_fds=int(preserve),
        )
    else:
        kwargs = {
            "bundle": copts.get("bundle", "."),
            "console_socket": copts.get("console_socket"),
            "pid_file": copts.get("pid_file"),
            "no_pivot": bool(copts.get("no_pivot")),
            "no_new_keyring": bool(copts.get("no_new_keyring")),
            "preserve_fds": int(preserve),
        }
        if command == "create":
            rt.create(cid, **kwargs)
        else:
            return int(rt.run(cid, detach=bool(copts.get("detach")), keep=bool(copts.get("keep")), **kwargs))
    return 0


def guarded(body: Callable[[], int | None], *, quick_exit: bool = False) -> NoReturn:
    """Run `body` and exit: its status, or the error's with one log record.

    quick_exit: leave with os._exit once the output is flushed, when nothing else could
    still need the interpreter (see `_exit`).
    """
    try:
        status = body()
    except OciSystemdError as exc:
        log.error(exc.message)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        if log.debug_enabled:
            import traceback

            traceback.print_exc()
        _exit(exc.exit_code, quick_exit)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug: still one error line for podman/containerd, then the trace
        log.error(f"internal error: {type(exc).__name__}: {exc}")
        import traceback

        traceback.print_exc()
        sys.exit(1)
    _exit(status or 0, quick_exit)


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

    def body() -> int | None:
        status = _dispatch(args)
        if status is None:
            from oci_systemd.cli import app as cli

            return cli.run_click(args)
        return status

    guarded(body, quick_exit=argv is None)
