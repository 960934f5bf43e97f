# SPDX-License-Identifier: Apache-2.0
"""Command line, runc-compatible: parse options, call the runtime, map errors to exits.

No logic lives here. Each command imports what it needs when it runs, so `state` does not
pay for `create`'s imports.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from oci_systemd.cli import commands as table
from oci_systemd.errors import OciSystemdError
from oci_systemd.runtime.log import log

F = TypeVar("F", bound=Callable[..., Any])


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from oci_systemd.cli import version

    click.echo(version.text())
    ctx.exit(0)


def _click_param(param: table.Option | table.Argument) -> Callable[[F], F]:
    """The click decorator for one declared option or argument."""
    kwargs: dict[str, Any] = {}
    if param.default is not None:
        kwargs["default"] = param.default
    if isinstance(param, table.Argument):
        if param.variadic:
            kwargs["nargs"] = -1
        if param.raw:
            kwargs["type"] = click.UNPROCESSED
        return click.argument(param.name, **kwargs)
    kwargs.update(help=param.help, hidden=param.hidden, multiple=param.multiple, envvar=param.envvar)
    if param.show_default:
        kwargs["show_default"] = True
    if param.kind == "flag":
        kwargs["is_flag"] = True
    elif param.kind == "version":
        kwargs.update(is_flag=True, expose_value=False, is_eager=True, callback=_print_version)
    elif param.kind == "int":
        kwargs["type"] = int
    elif param.kind == "uint":
        kwargs["type"] = click.IntRange(min=0)
    elif param.kind == "choice":
        kwargs["type"] = click.Choice(list(param.choices))
    return click.option(*param.names, param.dest, **kwargs)


def _declared(command: table.Command) -> Callable[[F], F]:
    """Attach `command`'s declared options and arguments to a click callback, in --help order."""

    params: list[table.Option | table.Argument] = [*command.options, *command.arguments]

    def attach(f: F) -> F:
        for param in reversed(params):  # decorators apply from the inside out
            f = _click_param(param)(f)
        return f

    return attach


class Options:
    def __init__(self, root: str, systemd_cgroup: bool, debug: bool, rootless: str) -> None:
        self.root = root
        self.systemd_cgroup = systemd_cgroup
        self.debug = debug
        self.rootless = rootless

    def runtime(self) -> Any:
        from oci_systemd.runtime.lifecycle import Runtime

        return Runtime(root=self.root, systemd_cgroup=self.systemd_cgroup, rootless_flag=self.rootless)


pass_opts = click.make_pass_decorator(Options)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@_declared(table.GLOBAL)
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


def _command(name: str) -> Callable[[Callable[..., Any]], click.Command]:
    """A subcommand of `cli` with the options and arguments `commands.py` declares for it."""
    declared = table.COMMANDS[name]
    settings = {} if declared.interspersed else {"allow_interspersed_args": False}

    def make(f: Callable[..., Any]) -> click.Command:
        return cli.command(name=name, context_settings=settings)(_declared(declared)(f))

    return make


# -- lifecycle -------------------------------------------------------------------------------


@_command("create")
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


@_command("run")
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


@_command("start")
@pass_opts
def start(opts: Options, container_id: str) -> None:
    """Execute the user's program in a created container."""
    opts.runtime().start(container_id)


@_command("state")
@pass_opts
def state(opts: Options, container_id: str) -> None:
    """Print the state of a container as JSON."""
    click.echo(json.dumps(opts.runtime().state(container_id), indent=2))


@_command("kill")
@pass_opts
def kill(opts: Options, container_id: str, signal: str, all_: bool) -> None:
    """Send a signal (name or number; default TERM) to the container's init."""
    opts.runtime().kill(container_id, signal, all_processes=all_)


@_command("delete")
@pass_opts
def delete(opts: Options, container_id: str, force: bool) -> None:
    """Delete a stopped container: its scope and its state."""
    opts.runtime().delete(container_id, force=force)


@_command("list")
@pass_opts
def list_(opts: Options, fmt: str, quiet: bool) -> None:
    """List the containers under --root."""
    from oci_systemd.cli import listing

    click.echo(listing.render(opts.runtime().list_containers(), fmt=fmt, quiet=quiet), nl=False)


@_command("ps")
@pass_opts
def ps(opts: Options, container_id: str, fmt: str, ps_args: tuple[str, ...]) -> None:
    """List the processes of a container."""
    from oci_systemd.cli import listing

    click.echo(listing.render_ps(opts.runtime().ps(container_id), fmt=fmt, ps_args=list(ps_args)), nl=False)


@_command("exec")
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


@_command("spec")
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


@_command("update")
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


@_command("pause")
@pass_opts
def pause(opts: Options, container_id: str) -> None:
    """Freeze every process of the container (systemd FreezeUnit)."""
    opts.runtime().pause(container_id)


@_command("resume")
@pass_opts
def resume(opts: Options, container_id: str) -> None:
    """Thaw a paused container (systemd ThawUnit)."""
    opts.runtime().resume(container_id)


@_command("events")
@pass_opts
def events(opts: Options, container_id: str, interval: str, stats_only: bool) -> None:
    """Print stats (and oom events) of a container as JSON lines until it stops."""
    from oci_systemd.cli import resource_flags

    def emit(event: dict[str, Any]) -> None:
        click.echo(json.dumps(event, separators=(",", ":")))

    opts.runtime().events(
        container_id, interval=resource_flags.parse_duration(interval), stats_only=stats_only, emit=emit
    )


@_command("features")
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
