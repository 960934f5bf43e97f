# SPDX-License-Identifier: Apache-2.0
"""The runtime's own log: runc-compatible lines to `--log`, or journald.

podman (for runtimes listed in `runtime_supports_json`) and containerd read the
`--log` file: JSON lines `{"level":"error","msg":"...","time":"<RFC 3339>"}`. podman
unmarshals the whole file as ONE object on failure, so a failing command writes exactly
one line there; warnings and debug lines go to the file only with --debug.
"""

from __future__ import annotations

import os
import sys
import time

from oci_systemd import jsonio

LEVELS = {"debug": 7, "info": 6, "warning": 4, "error": 3}


def rfc3339(ts: float | None = None, *, nanos: bool = True) -> str:
    """RFC 3339 in UTC with a 'Z', as Go's time.RFC3339Nano prints it (no datetime import:
    every command pays for what it imports)."""
    ns = time.time_ns() if ts is None else int(ts * 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    if nanos:
        text += f".{ns % 1_000_000_000:09d}".rstrip("0").rstrip(".")
    return text + "Z"


class Logger:
    def __init__(self) -> None:
        self.target: str | None = None
        self.fmt = "text"
        self.debug_enabled = False

    def configure(self, target: str | None, fmt: str, *, debug: bool) -> None:
        self.target = target or None
        self.fmt = fmt
        self.debug_enabled = debug

    def _journald_ident(self) -> str | None:
        if self.target == "journald":
            return "oci-systemd"
        if self.target and self.target.startswith("journald:"):
            return self.target.split(":", 1)[1] or "oci-systemd"
        return None

    def format(self, level: str, msg: str) -> str:
        now = rfc3339()
        if self.fmt == "json":
            return jsonio.dumps({"level": level, "msg": msg, "time": now})
        return f'time="{now}" level={level} msg={jsonio.dumps(msg)}'

    def write(self, level: str, msg: str, *, container_id: str | None = None) -> None:
        ident = self._journald_ident()
        if ident is not None:
            from oci_systemd.runtime import journal

            fields: dict[str, str | int] = {
                "MESSAGE": msg,
                "PRIORITY": LEVELS[level],
                "SYSLOG_IDENTIFIER": ident,
            }
            if container_id is not None:
                fields["CONTAINER_ID"] = container_id
            journal.send(fields)
            return
        if self.target is None:
            return
        line = self.format(level, msg) + "\n"
        path = self.target[5:] if self.target.startswith("file:") else self.target
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            print(f"oci-systemd: cannot open log {path}: {exc.strerror}", file=sys.stderr)
            return
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def error(self, msg: str) -> None:
        self.write("error", msg)
        print(msg, file=sys.stderr)

    def warning(self, msg: str, *, container_id: str | None = None) -> None:
        """A warning on stderr and in the log; with `container_id` also in the journal, tagged
        CONTAINER_ID= (one entry when the log is the journal)."""
        if container_id is not None and (self._journald_ident() is None or not self._writes_warnings()):
            from oci_systemd.runtime import journal

            journal.send(
                {
                    "MESSAGE": msg,
                    "PRIORITY": LEVELS["warning"],
                    "SYSLOG_IDENTIFIER": journal.SYSLOG_IDENTIFIER,
                    "CONTAINER_ID": container_id,
                }
            )
            container_id = None
        if self._writes_warnings():
            self.write("warning", msg, container_id=container_id)
        print(f"oci-systemd: warning: {msg}", file=sys.stderr)

    def _writes_warnings(self) -> bool:
        # podman reads a JSON log as ONE object: warnings go there only with --debug.
        return self.debug_enabled or self.fmt != "json"

    def debug(self, msg: str) -> None:
        if self.debug_enabled:
            self.write("debug", msg)
            print(f"oci-systemd: debug: {msg}", file=sys.stderr)


log = Logger()
