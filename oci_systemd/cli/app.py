# SPDX-License-Identifier: Apache-2.0
"""Command line, runc-compatible: parse options, call the runtime, map errors to exits.

No logic lives here. Each command imports what it needs when it runs, so `state` does not
pay for `create`'s imports.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click

from oci_systemd import OCI_VERSION, __version__
from oci_systemd.cli.entry import DEFAULT_ROOT
from oci_systemd.errors import OciSystemdError
from oci_systemd.runtime.log import log


def _commit() -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        with open(os.path.join(here, "data", "commit"), encoding="ascii") as f:
            return f.read().strip() or "unknown"
    except OSError:
        pass
    head = os.path.join(os.path.dirname(here), ".git", "HEAD")
    try:
        with open(head, encoding="ascii") as f:
            ref = f.read().strip()
        if ref.startswith("ref: "):
            with open(os.path.join(os.path.dirname(head), ref[5:]), encoding="ascii") as f:
                return f.read().strip()
        return ref
    except OSError:
        return "unknown"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"oci-systemd version {__version__}\ncommit: {_commit()}\nspec: {OCI_VERSION}")
    ctx.exit(0)


class Options:
    def __init__(self, root: str, systemd_cgroup: bool, debug: bool, rootless: str) -> None:
        self.root = root
        self.systemd_cgroup = systemd_cgroup
        self.debug = debug
        self.rootless = rootless

    def runtime(self) -> Any:
        from oci_systemd.runtime.lifecycle import Runtime

        return Runtime(root=self.root, systemd_cgroup=self.systemd_cgroup)


pass_opts = click.make_pass_decorator(Options)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    "-v",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the version and exit.",
)
@click.option(
    "--root",
    default=DEFAULT_ROOT,
    show_default=True,
    envvar="OCI_SYSTEMD_ROOT",
    help="Directory for the state of containers.",
)
@click.option(
    "--log",
    "log_target",
    default=None,
    help="Log file, or 'journald[:IDENT]'; default: errors to stderr only.",
)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--debug", is_flag=True, help="Log debug messages and show tracebacks.")
@click.option(
    "--systemd-cgroup",
    is_flag=True,
    help="Accepted for runc compatibility: cgroups are always managed by systemd.",
)
@click.option("--rootless", default="auto", hidden=True)
@click.option("--criu", default="criu", hidden=True)
@click.pass_context
def cli(
    ctx: click.Context,
    root: str,
    log_target: str | None,
    log_format: str,
    debug: bool,
    systemd_cgroup: bool,
    rootless: str,
    criu: str,
) -> None:
    """oci-systemd: an OCI container runtime built around systemd."""
    log.configure(log_target, log_format, debug=debug)
    ctx.obj = Options(root, systemd_cgroup, debug, rootless)


# -- lifecycle -------------------------------------------------------------------------------


def _create_options(f: Any) -> Any:
    f = click.option("--bundle", "-b", default=".", help="Path to the bundle directory.")(f)
    f = click.option(
        "--console-socket",
        default=None,
        help="Unix socket that receives the pty master (with process.terminal).",
    )(f)
    f = click.option("--pid-file", default=None, help="Write the container's init pid here.")(f)
    f = click.option("--no-pivot", is_flag=True, help="Use MS_MOVE + chroot instead of pivot_root.")(f)
    f = click.option("--no-new-keyring", is_flag=True, help="Do not create a session keyring.")(f)
    f = click.option(
        "--preserve-fds",
        type=click.IntRange(min=0),
        default=0,
        help="Pass N extra fds (3..3+N-1) to the container.",
    )(f)
    return f


@cli.command()
@_create_options
@click.argument("container_id")
@pass_opts
def create(
    opts: Options,
    container_id: str,
    bundle: str,
    console_socket: str | None,
    pid_file: str | None,
    no_pivot: bool,
    no_new_keyring: bool,
    preserve_fds: int,
) -> None:
    """Create a container: its scope, namespaces and rootfs, around a waiting idler."""
    opts.runtime().create(
        container_id,
        bundle=bundle,
        console_socket=console_socket,
        pid_file=pid_file,
        no_pivot=no_pivot,
        no_new_keyring=no_new_keyring,
        preserve_fds=preserve_fds,
    )


@cli.command()
@_create_options
@click.option("--detach", "-d", is_flag=True, help="Do not wait for the container to exit.")
@click.option("--keep", is_flag=True, help="Do not delete the container after it exits.")
@click.argument("container_id")
@pass_opts
def run(
    opts: Options,
    container_id: str,
    bundle: str,
    console_socket: str | None,
    pid_file: str | None,
    no_pivot: bool,
    no_new_keyring: bool,
    preserve_fds: int,
    detach: bool,
    keep: bool,
) -> None:
    """Create and start a container; wait for it and exit with its status."""
    status = opts.runtime().run(
        container_id,
        bundle=bundle,
        console_socket=console_socket,
        pid_file=pid_file,
        no_pivot=no_pivot,
        no_new_keyring=no_new_keyring,
        preserve_fds=preserve_fds,
        detach=detach,
        keep=keep,
    )
    sys.exit(status)


@cli.command()
@click.argument("container_id")
@pass_opts
def start(opts: Options, container_id: str) -> None:
    """Execute the user's program in a created container."""
    opts.runtime().start(container_id)


@cli.command()
@click.argument("container_id")
@pass_opts
def state(opts: Options, container_id: str) -> None:
    """Print the state of a container as JSON."""
    click.echo(json.dumps(opts.runtime().state(container_id), indent=2))


@cli.command()
@click.option("--all", "-a", "all_", is_flag=True, help="Send the signal to every process of the container.")
@click.argument("container_id")
@click.argument("signal", default="TERM")
@pass_opts
def kill(opts: Options, container_id: str, signal: str, all_: bool) -> None:
    """Send a signal (name or number; default TERM) to the container's init."""
    opts.runtime().kill(container_id, signal, all_processes=all_)


@cli.command()
@click.option("--force", "-f", is_flag=True, help="Kill the container first if it still runs.")
@click.argument("container_id")
@pass_opts
def delete(opts: Options, container_id: str, force: bool) -> None:
    """Delete a stopped container: its scope and its state."""
    opts.runtime().delete(container_id, force=force)


@cli.command(name="list")
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--quiet", "-q", is_flag=True, help="Print only the ids.")
@pass_opts
def list_(opts: Options, fmt: str, quiet: bool) -> None:
    """List the containers under --root."""
    from oci_systemd.cli import listing

    click.echo(listing.render(opts.runtime().list_containers(), fmt=fmt, quiet=quiet), nl=False)


@cli.command(context_settings={"allow_interspersed_args": False})
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.argument("container_id")
@click.argument("ps_args", nargs=-1)
@pass_opts
def ps(opts: Options, container_id: str, fmt: str, ps_args: tuple[str, ...]) -> None:
    """List the processes of a container."""
    from oci_systemd.cli import listing

    click.echo(listing.render_ps(opts.runtime().ps(container_id), fmt=fmt, ps_args=list(ps_args)), nl=False)


@cli.command(name="exec", context_settings={"allow_interspersed_args": False})
@click.option("--console-socket", default=None, help="Unix socket that receives the pty master.")
@click.option("--cwd", default=None, help="Current working directory in the container.")
@click.option("--env", "-e", multiple=True, help="Set an environment variable (KEY=VALUE).")
@click.option("--tty", "-t", is_flag=True, help="Allocate a pseudo-TTY.")
@click.option("--user", "-u", default=None, help="UID[:GID] to run as.")
@click.option("--additional-gids", "-g", type=int, multiple=True, help="Additional gids.")
@click.option("--process", "-p", "process_file", default=None, help="A process.json to run.")
@click.option("--detach", "-d", is_flag=True, help="Do not wait for the process.")
@click.option("--pid-file", default=None, help="Write the process's pid here.")
@click.option("--process-label", default=None, hidden=True)
@click.option("--apparmor", default=None, hidden=True)
@click.option("--no-new-privs", is_flag=True, help="Set no_new_privileges for the process.")
@click.option("--cap", "-c", multiple=True, help="Add a capability to the process.")
@click.option("--preserve-fds", type=click.IntRange(min=0), default=0, help="Pass N extra fds.")
@click.option("--cgroup", default=None, hidden=True)
@click.option("--ignore-paused", is_flag=True, hidden=True)
@click.argument("container_id")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_opts
def exec_(
    opts: Options,
    container_id: str,
    command: tuple[str, ...],
    console_socket: str | None,
    cwd: str | None,
    env: tuple[str, ...],
    tty: bool,
    user: str | None,
    additional_gids: tuple[int, ...],
    process_file: str | None,
    detach: bool,
    pid_file: str | None,
    process_label: str | None,
    apparmor: str | None,
    no_new_privs: bool,
    cap: tuple[str, ...],
    preserve_fds: int,
    cgroup: str | None,
    ignore_paused: bool,
) -> None:
    """Run a new process inside a running container."""
    from oci_systemd.runtime import exec_process

    runtime = opts.runtime()
    if process_file:
        process = exec_process.load_process_file(process_file)
    else:
        from oci_systemd.errors import ContainerNotFoundError

        if container_id not in runtime.store.ids():
            raise ContainerNotFoundError(container_id)
        base = runtime.store.read_config(container_id).get("process") or {}
        process = exec_process.from_flags(
            base,
            command,
            env=env,
            cwd=cwd,
            user=user,
            additional_gids=additional_gids,
            caps=cap,
            tty=tty,
            no_new_privs=no_new_privs,
        )
    status = runtime.exec(
        container_id,
        process,
        detach=detach,
        pid_file=pid_file,
        console_socket=console_socket,
        preserve_fds=preserve_fds,
    )
    sys.exit(status)


@cli.command()
@click.option("--bundle", "-b", default=".", help="Directory to write config.json into.")
@click.option("--rootless", is_flag=True, help="A config for a rootless container.")
def spec(bundle: str, rootless: bool) -> None:
    """Write a default config.json, as `runc spec` does."""
    from oci_systemd.runtime.default_config import default_config

    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise OciSystemdError("File config.json exists. Remove it first")
    try:
        with open(path, "x", encoding="utf-8") as f:
            json.dump(default_config(rootless=rootless), f, indent="\t")
            f.write("\n")
    except OSError as exc:
        raise OciSystemdError(f"write {path}: {exc.strerror.lower() if exc.strerror else exc}") from exc


@cli.command()
@click.option(
    "--resources",
    "-r",
    "resources_file",
    default=None,
    help="JSON file with linux.resources to apply ('-' for stdin).",
)
@click.option("--memory", default=None, help="Memory limit (bytes, or with k/m/g suffix).")
@click.option("--memory-reservation", default=None, help="Memory soft limit.")
@click.option("--memory-swap", default=None, help="Memory + swap limit (-1 for unlimited).")
@click.option("--cpu-share", type=int, default=None, help="CPU shares (relative weight).")
@click.option("--cpu-quota", type=int, default=None, help="CPU CFS quota in µs per period.")
@click.option("--cpu-period", type=int, default=None, help="CPU CFS period in µs.")
@click.option("--cpuset-cpus", default=None, help="CPUs to use (0-3, 0,1).")
@click.option("--cpuset-mems", default=None, help="Memory nodes to use.")
@click.option("--pids-limit", type=int, default=None, help="Maximum number of tasks.")
@click.option("--blkio-weight", type=int, default=None, help="Block IO weight (10-1000).")
@click.argument("container_id")
@pass_opts
def update(
    opts: Options,
    container_id: str,
    resources_file: str | None,
    memory: str | None,
    memory_reservation: str | None,
    memory_swap: str | None,
    cpu_share: int | None,
    cpu_quota: int | None,
    cpu_period: int | None,
    cpuset_cpus: str | None,
    cpuset_mems: str | None,
    pids_limit: int | None,
    blkio_weight: int | None,
) -> None:
    """Change a container's resource limits (systemd unit properties, live)."""
    from oci_systemd.cli import resource_flags

    resources = resource_flags.collect(
        resources_file,
        memory=memory,
        memory_reservation=memory_reservation,
        memory_swap=memory_swap,
        cpu_share=cpu_share,
        cpu_quota=cpu_quota,
        cpu_period=cpu_period,
        cpuset_cpus=cpuset_cpus,
        cpuset_mems=cpuset_mems,
        pids_limit=pids_limit,
        blkio_weight=blkio_weight,
    )
    opts.runtime().update(container_id, resources)


@cli.command()
@click.argument("container_id")
@pass_opts
def pause(opts: Options, container_id: str) -> None:
    """Freeze every process of the container (systemd FreezeUnit)."""
    opts.runtime().pause(container_id)


@cli.command()
@click.argument("container_id")
@pass_opts
def resume(opts: Options, container_id: str) -> None:
    """Thaw a paused container (systemd ThawUnit)."""
    opts.runtime().resume(container_id)


@cli.command()
@click.option("--interval", default="5s", help="Interval between stats (e.g. 5s, 500ms).")
@click.option("--stats", "stats_only", is_flag=True, help="Print the stats once and exit.")
@click.argument("container_id")
@pass_opts
def events(opts: Options, container_id: str, interval: str, stats_only: bool) -> None:
    """Print stats (and oom events) of a container as JSON lines until it stops."""
    from oci_systemd.cli import resource_flags

    def emit(event: dict[str, Any]) -> None:
        click.echo(json.dumps(event, separators=(",", ":")))

    opts.runtime().events(
        container_id, interval=resource_flags.parse_duration(interval), stats_only=stats_only, emit=emit
    )


@cli.command()
def features() -> None:
    """Print what this runtime supports (runtime-spec features JSON)."""
    from oci_systemd.runtime import features as feat

    click.echo(json.dumps(feat.features(), indent=4))


def _register_lazy(name: str, module: str, attr: str) -> None:
    """Add a command group whose module is imported only when that command runs."""

    class Lazy(click.Group):
        def _real(self) -> click.Group:
            import importlib

            group: click.Group = getattr(importlib.import_module(module), attr)
            return group

        def list_commands(self, ctx: click.Context) -> list[str]:
            return self._real().list_commands(ctx)

        def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
            return self._real().get_command(ctx, cmd_name)

        def invoke(self, ctx: click.Context) -> Any:
            return self._real().invoke(ctx)

        def get_help(self, ctx: click.Context) -> str:
            return self._real().get_help(ctx)

    cli.add_command(Lazy(name=name, help=f"See `oci-systemd {name} --help`."))


_register_lazy("sandbox", "oci_systemd.devtools.sandbox", "sandbox")


def run_click(argv: list[str]) -> int:
    """Parse with click and run; click's own errors map to its exit codes (2 for usage)."""
    try:
        cli.main(args=argv, prog_name="oci-systemd", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        log.error(exc.format_message())
        return int(exc.exit_code)
    except click.exceptions.Abort:
        return 130
    return 0


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry used by `python -m oci_systemd` and tests: the fast path first, click otherwise."""
    from oci_systemd.cli import entry

    entry.main(argv)
