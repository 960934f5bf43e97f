# SPDX-License-Identifier: Apache-2.0
"""`Runtime`: the verbs behind one object, for the command line and the tests.

Each verb lives in its own module under `oci_systemd.runtime.verbs` and is imported when it
is called, so `state` or `kill` never pays for create's imports. What the verbs share is
here: the state store (`--root`) and the connection to systemd (`Manager`), which a caller
may hand in (`Runtime(root, bus=...)`: the unit tests' fake systemd) or which is opened on
first use and closed when the verb is done.

create:  validate -> claim the id -> spawn the idler -> the scope with the idler in it
         (JobRemoved waited) -> the idler makes the namespaces (id maps) and forks the init
         -> record the init -> prestart/createRuntime hooks -> the idler builds the rootfs,
         drops privileges and waits -> record "created" + pid file.
start:   connect to the idler's start socket, send START; EOF after EXEC means exec worked.
state:   the record + the unit's ActiveState (systemd) + a pid/start-time check.
kill:    the init through a pidfd; --all: KillUnit. delete: stop and reset the unit,
         poststop hooks, drop the state.
"""

from __future__ import annotations

from oci_systemd.runtime import rootless
from oci_systemd.runtime.state import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from oci_systemd.runtime.state import Record
    from oci_systemd.runtime.status import OciState
    from oci_systemd.runtime.systemd import Systemd
    from oci_systemd.runtime.terminal import ConsoleListener


class Manager:
    """`with runtime.manager as bus`: the connection to systemd. Opened on first use and
    shared by nested `with`s (a verb and the status check inside it), closed when the
    outermost one ends; a bus handed to `Runtime` is used and never closed here.
    (A class, not contextlib: its import would cost every short command.)"""

    def __init__(self, given: Systemd | None = None, *, user: bool = False) -> None:
        self._given = given
        self._user = user  # the caller's own user manager (rootless.bus_address), not PID 1
        self._own: Systemd | None = None
        self._depth = 0

    def __enter__(self) -> Systemd:
        if self._given is not None:
            return self._given
        if self._own is None:
            from oci_systemd.runtime.systemd import Systemd

            self._own = Systemd(rootless.bus_address() if self._user else None)
        self._depth += 1
        return self._own

    def __exit__(self, *exc: object) -> None:
        if self._given is not None:
            return
        self._depth -= 1
        if self._depth == 0 and self._own is not None:
            self._own.close()
            self._own = None


class Runtime:
    def __init__(
        self,
        root: str,
        *,
        systemd_cgroup: bool = True,
        bus: Systemd | None = None,
        rootless_flag: str = "auto",
    ) -> None:
        # A user (euid != 0) keeps its containers in its runtime directory and its own
        # systemd manager (rootless.py); root's are in /run/oci-systemd and PID 1.
        user = rootless.is_rootless()
        self.store = Store(rootless.state_root(root), mode=rootless.ROOT_MODE) if user else Store(root)
        # --systemd-cgroup: accepted for runc's callers; units are always systemd's here.
        self.systemd_cgroup = systemd_cgroup
        # --rootless: checked by create and run, as runc reads it there (rootless.check_flag).
        self.rootless_flag = rootless_flag
        self.manager = Manager(bus, user=user)

    def create(
        self,
        cid: str,
        *,
        bundle: str,
        console_socket: str | None = None,
        pid_file: str | None = None,
        no_pivot: bool = False,
        no_new_keyring: bool = False,
        preserve_fds: int = 0,
        console_listener: ConsoleListener | None = None,
    ) -> Record:
        from oci_systemd.runtime.verbs import create

        return create.create(
            self,
            cid,
            bundle=bundle,
            console_socket=console_socket,
            pid_file=pid_file,
            no_pivot=no_pivot,
            no_new_keyring=no_new_keyring,
            preserve_fds=preserve_fds,
            console_listener=console_listener,
        )

    def start(self, cid: str) -> None:
        from oci_systemd.runtime.verbs import start

        start.start(self, cid)

    def state(self, cid: str) -> OciState:
        from oci_systemd.runtime.verbs import state

        return state.state(self, cid)

    def kill(self, cid: str, signal: str, *, all_processes: bool = False) -> None:
        from oci_systemd.runtime.verbs import kill

        kill.kill(self, cid, signal, all_processes=all_processes)

    def delete(self, cid: str, *, force: bool = False) -> None:
        from oci_systemd.runtime.verbs import delete

        delete.delete(self, cid, force=force)

    def run(
        self,
        cid: str,
        *,
        bundle: str,
        console_socket: str | None = None,
        pid_file: str | None = None,
        no_pivot: bool = False,
        no_new_keyring: bool = False,
        preserve_fds: int = 0,
        detach: bool = False,
        keep: bool = False,
    ) -> int:
        from oci_systemd.runtime.verbs import run

        return run.run(
            self,
            cid,
            bundle=bundle,
            console_socket=console_socket,
            pid_file=pid_file,
            no_pivot=no_pivot,
            no_new_keyring=no_new_keyring,
            preserve_fds=preserve_fds,
            detach=detach,
            keep=keep,
        )

    def exec(
        self,
        cid: str,
        process: dict[str, Any],
        *,
        detach: bool = False,
        pid_file: str | None = None,
        console_socket: str | None = None,
        preserve_fds: int = 0,
    ) -> int:
        from oci_systemd.runtime.verbs import exec as exec_

        return exec_.exec_process(
            self,
            cid,
            process,
            detach=detach,
            pid_file=pid_file,
            console_socket=console_socket,
            preserve_fds=preserve_fds,
        )

    def list_containers(self) -> list[OciState]:
        from oci_systemd.runtime.verbs import inspect

        return inspect.list_containers(self)

    def ps(self, cid: str) -> list[int]:
        from oci_systemd.runtime.verbs import inspect

        return inspect.ps(self, cid)

    def stats(self, cid: str) -> dict[str, Any]:
        from oci_systemd.runtime.verbs import inspect

        return inspect.stats(self, cid)

    def events(
        self, cid: str, *, interval: float, stats_only: bool, emit: Callable[[dict[str, Any]], None]
    ) -> None:
        from oci_systemd.runtime.verbs import inspect

        inspect.events(self, cid, interval=interval, stats_only=stats_only, emit=emit)

    def update(self, cid: str, resources: dict[str, Any]) -> None:
        from oci_systemd.runtime.verbs import update

        update.update(self, cid, resources)

    def pause(self, cid: str) -> None:
        from oci_systemd.runtime.verbs import update

        update.freeze(self, cid, frozen=True)

    def resume(self, cid: str) -> None:
        from oci_systemd.runtime.verbs import update

        update.freeze(self, cid, frozen=False)
