# SPDX-License-Identifier: Apache-2.0
"""The steps of one create, in order, with what must be undone if a later one fails.

`CreateSteps` gets what create's steps need and nothing more: the store (to record the init),
the manager and the placement (to put the idler into the container's unit), the idler plan,
the record and the unit's resource properties.
"""

from __future__ import annotations

import os

from oci_systemd.errors import IdlerError, OciSystemdError
from oci_systemd.runtime.idler_client import spawn_idler
from oci_systemd.runtime.log import log
from oci_systemd.runtime.state import Status, process_start_time
from oci_systemd.runtime.transitions import fault_point

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Callable, Sequence
    from typing import TypeVar

    from oci_systemd.container.channel import Channel
    from oci_systemd.container.protocol import CreatePlan
    from oci_systemd.runtime.lifecycle import Manager
    from oci_systemd.runtime.placement import Placement
    from oci_systemd.runtime.state import Record, Store
    from oci_systemd.runtime.systemd import Systemd, UnitProperty

    T = TypeVar("T")
else:
    import _signal  # the C module: `signal` costs every create its enums


class CreateSteps:
    def __init__(
        self,
        *,
        store: Store,
        manager: Manager,
        placement: Placement,
        plan: CreatePlan,
        record: Record,
        props: Sequence[UnitProperty],
    ) -> None:
        self.store = store
        self.manager = manager
        self.placement = placement
        self.cid = record["id"]
        self.plan = plan
        self.record = record
        self.props = props
        self.idler_pid = 0
        self.init_pid = 0
        self.scope_started = False
        self.forwarder_pid = 0
        self.chan: Channel | None = None
        self.bus: Systemd | None = None  # connected early by build(), closed before the wait

    def build(self) -> None:
        from oci_systemd.container import protocol

        chan = self.chan = self._spawn_idler()
        fault_point("create:spawned")
        protocol.send_plan(chan, self.plan)
        # The unit first, with the idler in it, while the idler's interpreter starts: the
        # scope's job mostly waits for the kernel (moving a process between cgroups waits for
        # an RCU grace period, ~10 ms here), and the two waits overlap. The idler makes its
        # namespaces and forks the init only after JOINED, so the init is born in the unit.
        self.bus = self.manager.__enter__()
        try:
            self._start_unit()
            fault_point("create:scoped")
            self.placement.enter_leaf(self.idler_pid, self.forwarder_pid)
        except OciSystemdError as exc:
            # An idler that failed at once (its error is on the channel) leaves the scope
            # empty or its process gone: its own report says why, these errors would not.
            raise self._idler_error() or exc from None
        self._send(protocol.send_joined)
        userns, pid = self._recv(protocol.recv_userns_or_pid)
        if userns:
            self._write_id_maps(pid)
            protocol.send_mapped(chan)
            pid = self._recv(protocol.recv_pid)
        self._record_init(pid)
        self._reap_idler_if_forked()
        self._setup_network()
        self._run_runtime_hooks()
        self._send(protocol.send_scoped)
        self._close_bus()
        self._recv(protocol.recv_created)
        chan.close()
        self.record["phase"] = "created"
        self.store.write(self.cid, self.record)

    def _run_runtime_hooks(self) -> None:
        """prestart and createRuntime, in the runtime's namespaces. Most configs have no hooks:
        then neither the hooks module nor the state object's is imported."""
        config_hooks = self.plan["config"].get("hooks")
        if not config_hooks:
            return
        from oci_systemd.container import hooks
        from oci_systemd.runtime.status import state_json

        state = state_json(self.record, Status.CREATING)
        hooks.run_stage("prestart", config_hooks, state)
        hooks.run_stage("createRuntime", config_hooks, state)

    def _record_init(self, pid: int) -> None:
        """The init's pid and start time in the record, before anything can kill it."""
        self.init_pid = pid
        start = process_start_time(pid)
        if start is None:
            raise IdlerError("the container's init exited before its scope was created")
        self.record["pid"] = pid
        self.record["pid_start"] = start
        self.store.write(self.cid, self.record)
        fault_point("create:pid")

    def _recv(self, step: Callable[[Channel], T]) -> T:
        """One receiving step of the protocol; the idler's own error comes out of it as is."""
        from oci_systemd.container import channel

        assert self.chan is not None
        try:
            return step(self.chan)
        except channel.ChannelClosed:
            raise IdlerError("the idler exited unexpectedly while creating the container") from None

    def _send(self, step: Callable[[Channel], None]) -> None:
        """One sending step; if the idler is gone, raise the error it reported before dying."""
        assert self.chan is not None
        try:
            step(self.chan)
        except OSError:
            raise self._idler_error() or IdlerError(
                "the idler exited unexpectedly while creating the container"
            ) from None

    def _idler_error(self) -> OciSystemdError | None:
        """The error the idler sent before it died, if any is waiting on the channel (it died
        before JOINED: a console socket that can't be reached, say)."""
        import select

        from oci_systemd.container import channel, protocol

        assert self.chan is not None
        if not select.select([self.chan.fileno()], [], [], 0.1)[0]:
            return None
        try:
            protocol.recv_joined(self.chan)  # the runtime sends JOINED: only an error is wanted here
        except OciSystemdError as exc:
            return exc
        except (channel.ChannelClosed, ValueError, OSError):
            pass  # EOF or noise without a report: the caller's own error is the best we have
        return None

    def _spawn_idler(self) -> Channel:
        """The idler, with the container's stdout/stderr going to the journal forwarder when
        the config asks for it (the forwarder is started first: it joins the unit too)."""
        from oci_systemd.runtime import log_forwarder
        from oci_systemd.runtime.transitions import in_user_manager

        stdio = None
        # In the unit mode the container's output is the service's own (the journal stream
        # systemd gave us); a forwarder would stay resident for nothing.
        if log_forwarder.wanted(self.plan["config"]) and not self.placement.hands_over:
            self.forwarder_pid, out_w, err_w = log_forwarder.start_forwarder(
                self.cid, self.record["scope"], user_manager=in_user_manager(self.record)
            )
            stdio = (out_w, err_w)
        try:
            chan, self.idler_pid = spawn_idler(
                self.plan["extra_fds"], stdio, detached=self.placement.hands_over
            )
        finally:
            if stdio is not None:
                os.close(stdio[0])
                os.close(stdio[1])
        return chan

    def _reap_idler_if_forked(self) -> None:
        if self.placement.hands_over:  # not our child: systemd reaps it
            if self.idler_pid != self.init_pid:
                self.idler_pid = 0
            return
        if self.idler_pid and self.idler_pid != self.init_pid:
            os.waitpid(self.idler_pid, 0)
            self.idler_pid = 0

    def _write_id_maps(self, pid: int) -> None:
        from oci_systemd.container import namespaces

        linux = self.plan["config"].get("linux") or {}
        namespaces.write_id_maps(pid, linux.get("uidMappings") or [], linux.get("gidMappings") or [])

    def _close_bus(self) -> None:
        if self.bus is not None:
            self.bus = None
            self.manager.__exit__(None, None, None)

    def _start_unit(self) -> None:
        assert self.bus is not None, "build() connects before the unit is started"
        pids = [self.idler_pid, *([self.forwarder_pid] if self.forwarder_pid else [])]
        self.placement.start(self.bus, self.record, pids, self.props)
        self.scope_started = True

    def _setup_network(self) -> None:
        linux = self.plan["config"].get("linux") or {}
        devices = linux.get("netDevices") or {}
        if devices:
            from oci_systemd.runtime import network

            network.move_devices(self.init_pid, devices)

    def abort(self) -> None:
        """Undo a failed create: no process, no unit, nothing of ours left."""
        from oci_systemd.runtime.verbs.delete import destroy

        for pid in (self.init_pid, self.idler_pid, self.forwarder_pid):
            if pid:
                try:
                    os.kill(pid, _signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.idler_pid:
            try:
                os.waitpid(self.idler_pid, 0)
            except ChildProcessError:
                pass
        if self.chan is not None:
            self.chan.close()
        try:
            if self.scope_started:
                if self.bus is None:
                    self.bus = self.manager.__enter__()
                destroy(self.bus, self.record)
        except OciSystemdError as exc:
            log.warning(f"cleanup of scope {self.record['scope']} failed: {exc}")
        finally:
            self._close_bus()
