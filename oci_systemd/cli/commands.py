# SPDX-License-Identifier: Apache-2.0
"""The command line as data: every command, its options and arguments, declared once.

Two parsers read this table. entry.py's fast path parses the lifecycle verbs engines send
(create, start, state, kill, delete, run, exec with --process) straight from it, so those
calls never import click; app.py generates click's options and arguments from it for the
full interface (help, errors, completion, man pages). tests/unit/test_cli_parity.py runs
the same command lines through both and compares the calls they make.

This module imports nothing (every podman/containerd call loads it) and holds no behaviour:
the commands' bodies are in app.py (click) and entry.py (fast path). Like mkosi's
`ConfigSetting`: plain records, read by whoever needs them.

Options keep runc's spellings (`--root`, `--log`, `--log-format`, `--bundle/-b`,
`--force/-f`, `--all/-a`, ...); global options come before the command, as in runc.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~8 ms: annotations only
if TYPE_CHECKING:
    from typing import Literal

    Kind = Literal["flag", "str", "int", "uint", "choice", "version"]

DEFAULT_ROOT = "/run/oci-systemd"
ROOT_ENVVAR = "OCI_SYSTEMD_ROOT"


class Option:
    """One option: its spellings, where its value goes (`dest`), its type, how --help shows it.

    kind: "flag" (no value; True when given), "str", "int", "uint" (an int >= 0), "choice"
    (one of `choices`), "version" (prints the version and exits, before anything else).
    `multiple`: may be repeated, the values collected in a tuple (click's multiple=True).
    `envvar`: read when the option is not on the command line (and the variable not empty).
    """

    __slots__ = (
        "choices",
        "default",
        "dest",
        "envvar",
        "help",
        "hidden",
        "kind",
        "multiple",
        "names",
        "show_default",
    )

    def __init__(
        self,
        *names: str,
        dest: str,
        kind: Kind = "str",
        default: str | int | None = None,
        choices: tuple[str, ...] = (),
        multiple: bool = False,
        envvar: str | None = None,
        show_default: bool = False,
        hidden: bool = False,
        help: str | None = None,
    ) -> None:
        self.names = names
        self.dest = dest
        self.kind = kind
        self.default = default
        self.choices = choices
        self.multiple = multiple
        self.envvar = envvar
        self.show_default = show_default
        self.hidden = hidden
        self.help = help

    @property
    def takes_value(self) -> bool:
        return self.kind not in ("flag", "version")


class Argument:
    """A positional argument. `variadic`: takes every remaining word (click's nargs=-1), as
    exec's command and ps's arguments; `raw`: words kept as given (click.UNPROCESSED)."""

    __slots__ = ("default", "name", "raw", "variadic")

    def __init__(
        self, name: str, *, default: str | None = None, variadic: bool = False, raw: bool = False
    ) -> None:
        self.name = name
        self.default = default
        self.variadic = variadic
        self.raw = raw

    @property
    def required(self) -> bool:
        return self.default is None and not self.variadic


class Command:
    """A command: its options and arguments in --help order.

    interspersed: options may follow arguments (`create c1 --bundle b`); False for commands
    whose trailing words are passed on (exec's command, ps's arguments), as in runc.
    """

    __slots__ = ("arguments", "interspersed", "name", "options")

    def __init__(
        self,
        name: str,
        options: tuple[Option, ...] = (),
        arguments: tuple[Argument, ...] = (),
        *,
        interspersed: bool = True,
    ) -> None:
        self.name = name
        self.options = options
        self.arguments = arguments
        self.interspersed = interspersed

    def option(self, name: str) -> Option | None:
        """The option spelled `name` (`--bundle`, `-b`), None if this command has none."""
        for opt in self.options:
            if name in opt.names:
                return opt
        return None


# -- global options (before the command) ---------------------------------------------------

GLOBAL = Command(
    "",
    (
        Option("--version", "-v", dest="version", kind="version", help="Print the version and exit."),
        Option(
            "--root",
            dest="root",
            default=DEFAULT_ROOT,
            show_default=True,
            envvar=ROOT_ENVVAR,
            help="Directory for the state of containers.",
        ),
        Option(
            "--log",
            dest="log_target",
            help="Log file, or 'journald[:IDENT]'; default: errors to stderr only.",
        ),
        Option(
            "--log-format",
            dest="log_format",
            kind="choice",
            choices=("text", "json"),
            default="text",
            show_default=True,
        ),
        Option("--debug", dest="debug", kind="flag", help="Log debug messages and show tracebacks."),
        Option(
            "--systemd-cgroup",
            dest="systemd_cgroup",
            kind="flag",
            help="Accepted for runc compatibility: cgroups are always managed by systemd.",
        ),
        Option(
            "--rootless",
            dest="rootless",
            default="auto",
            help="true, false or auto (runc's): auto follows who runs it, the user's manager or PID 1's.",
        ),
        Option("--criu", dest="criu", default="criu", hidden=True),
    ),
)

# -- lifecycle -------------------------------------------------------------------------------

CONTAINER_ID = Argument("container_id")

# create's and run's, in the order --help has always shown them.
_CREATE_OPTIONS = (
    Option(
        "--preserve-fds",
        dest="preserve_fds",
        kind="uint",
        default=0,
        help="Pass N extra fds (3..3+N-1) to the container.",
    ),
    Option("--no-new-keyring", dest="no_new_keyring", kind="flag", help="Do not create a session keyring."),
    Option("--no-pivot", dest="no_pivot", kind="flag", help="Use MS_MOVE + chroot instead of pivot_root."),
    Option("--pid-file", dest="pid_file", help="Write the container's init pid here."),
    Option(
        "--console-socket",
        dest="console_socket",
        help="Unix socket that receives the pty master (with process.terminal).",
    ),
    Option("--bundle", "-b", dest="bundle", default=".", help="Path to the bundle directory."),
)

_FORMAT = Option("--format", "-f", dest="fmt", kind="choice", choices=("table", "json"), default="table")

COMMANDS = {
    cmd.name: cmd
    for cmd in (
        Command("create", _CREATE_OPTIONS, (CONTAINER_ID,)),
        Command(
            "run",
            (
                *_CREATE_OPTIONS,
                Option(
                    "--detach",
                    "-d",
                    dest="detach",
                    kind="flag",
                    help="Do not wait for the container to exit.",
                ),
                Option(
                    "--keep", dest="keep", kind="flag", help="Do not delete the container after it exits."
                ),
            ),
            (CONTAINER_ID,),
        ),
        Command("start", (), (CONTAINER_ID,)),
        Command("state", (), (CONTAINER_ID,)),
        Command(
            "kill",
            (
                Option(
                    "--all",
                    "-a",
                    dest="all_",
                    kind="flag",
                    help="Send the signal to every process of the container.",
                ),
            ),
            (CONTAINER_ID, Argument("signal", default="TERM")),
        ),
        Command(
            "delete",
            (
                Option(
                    "--force",
                    "-f",
                    dest="force",
                    kind="flag",
                    help="Kill the container first if it still runs.",
                ),
            ),
            (CONTAINER_ID,),
        ),
        Command(
            "list",
            (_FORMAT, Option("--quiet", "-q", dest="quiet", kind="flag", help="Print only the ids.")),
        ),
        Command("ps", (_FORMAT,), (CONTAINER_ID, Argument("ps_args", variadic=True)), interspersed=False),
        Command(
            "exec",
            (
                Option(
                    "--console-socket",
                    dest="console_socket",
                    help="Unix socket that receives the pty master.",
                ),
                Option("--cwd", dest="cwd", help="Current working directory in the container."),
                Option(
                    "--env", "-e", dest="env", multiple=True, help="Set an environment variable (KEY=VALUE)."
                ),
                Option("--tty", "-t", dest="tty", kind="flag", help="Allocate a pseudo-TTY."),
                Option("--user", "-u", dest="user", help="UID[:GID] to run as."),
                Option(
                    "--additional-gids",
                    "-g",
                    dest="additional_gids",
                    kind="int",
                    multiple=True,
                    help="Additional gids.",
                ),
                Option("--process", "-p", dest="process_file", help="A process.json to run."),
                Option("--detach", "-d", dest="detach", kind="flag", help="Do not wait for the process."),
                Option("--pid-file", dest="pid_file", help="Write the process's pid here."),
                Option("--process-label", dest="process_label", hidden=True),
                Option("--apparmor", dest="apparmor", hidden=True),
                Option(
                    "--no-new-privs",
                    dest="no_new_privs",
                    kind="flag",
                    help="Set no_new_privileges for the process.",
                ),
                Option("--cap", "-c", dest="cap", multiple=True, help="Add a capability to the process."),
                Option(
                    "--preserve-fds", dest="preserve_fds", kind="uint", default=0, help="Pass N extra fds."
                ),
                Option("--cgroup", dest="cgroup", hidden=True),
                Option("--ignore-paused", dest="ignore_paused", kind="flag", hidden=True),
            ),
            (CONTAINER_ID, Argument("command", variadic=True, raw=True)),
            interspersed=False,
        ),
        Command(
            "spec",
            (
                Option(
                    "--bundle", "-b", dest="bundle", default=".", help="Directory to write config.json into."
                ),
                Option(
                    "--rootless", dest="rootless", kind="flag", help="A config for a rootless container."
                ),
            ),
        ),
        Command(
            "update",
            (
                Option(
                    "--resources",
                    "-r",
                    dest="resources_file",
                    help="JSON file with linux.resources to apply ('-' for stdin).",
                ),
                Option("--memory", dest="memory", help="Memory limit (bytes, or with k/m/g suffix)."),
                Option("--memory-reservation", dest="memory_reservation", help="Memory soft limit."),
                Option("--memory-swap", dest="memory_swap", help="Memory + swap limit (-1 for unlimited)."),
                Option("--cpu-share", dest="cpu_share", kind="int", help="CPU shares (relative weight)."),
                Option("--cpu-quota", dest="cpu_quota", kind="int", help="CPU CFS quota in µs per period."),
                Option("--cpu-period", dest="cpu_period", kind="int", help="CPU CFS period in µs."),
                Option("--cpuset-cpus", dest="cpuset_cpus", help="CPUs to use (0-3, 0,1)."),
                Option("--cpuset-mems", dest="cpuset_mems", help="Memory nodes to use."),
                Option("--pids-limit", dest="pids_limit", kind="int", help="Maximum number of tasks."),
                Option("--blkio-weight", dest="blkio_weight", kind="int", help="Block IO weight (10-1000)."),
            ),
            (CONTAINER_ID,),
        ),
        Command("pause", (), (CONTAINER_ID,)),
        Command("resume", (), (CONTAINER_ID,)),
        Command(
            "events",
            (
                Option(
                    "--interval",
                    dest="interval",
                    default="5s",
                    help="Interval between stats (e.g. 5s, 500ms).",
                ),
                Option("--stats", dest="stats_only", kind="flag", help="Print the stats once and exit."),
            ),
            (CONTAINER_ID,),
        ),
        Command("features"),
    )
}
