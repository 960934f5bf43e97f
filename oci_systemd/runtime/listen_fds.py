# SPDX-License-Identifier: Apache-2.0
"""Socket activation: sd_listen_fds(3) semantics for the fds systemd passed us.

systemd hands over fds 3..3+LISTEN_FDS-1 with LISTEN_PID=<receiver> and optional
LISTEN_FDNAMES=a:b:c. Like runc, we pass them on only when LISTEN_PID is our own pid
(variables meant for another process are ignored, podman#20968), and tell the container
they are its own: LISTEN_PID=1, as it sees itself in its pid namespace.
"""

from __future__ import annotations

import os

from oci_systemd.errors import OciSystemdError

TYPE_CHECKING = False  # collections.abc costs ~2 ms at import: annotations only
if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping, Sequence

SD_LISTEN_FDS_START = 3
VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
_UNKNOWN_NAME = "unknown"  # what sd_listen_fds_with_names() reports without LISTEN_FDNAMES
_INT_MAX = 2**31 - 1


class ListenFds(tuple[int, tuple[str, ...]]):
    """(count, names). A plain tuple subclass: typing.NamedTuple would cost ~2 ms to import."""

    __slots__ = ()

    def __new__(cls, count: int, names: tuple[str, ...]) -> ListenFds:
        return super().__new__(cls, (count, tuple(names)))

    @property
    def count(self) -> int:  # type: ignore[override]
        return self[0]

    @property
    def names(self) -> tuple[str, ...]:
        return self[1]

    @property
    def fds(self) -> range:
        """The inherited descriptors: 3, 4, ... (SD_LISTEN_FDS_START onwards)."""
        return range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + self.count)

    def __repr__(self) -> str:
        return f"ListenFds(count={self.count}, names={self.names!r})"


NONE = ListenFds(0, ())


def _debug(message: str) -> None:
    import logging  # only when something is off; keeps the module import-light

    logging.getLogger(__name__).debug("%s", message)


def _parse_uint(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def inherited_fds(environ: Mapping[str, str], *, pid: int | None = None) -> ListenFds:
    """The listen fds passed to process `pid` (default: us) per `environ`; NONE if none are.

    Malformed variables are ignored with a debug note, never an error. Names default to
    "unknown" when LISTEN_FDNAMES is missing or does not have one name per fd.
    """
    listen_pid = environ.get("LISTEN_PID")
    listen_fds = environ.get("LISTEN_FDS")
    if listen_pid is None or listen_fds is None:
        return NONE
    expected = os.getpid() if pid is None else pid
    parsed_pid = _parse_uint(listen_pid)
    if parsed_pid is None or parsed_pid == 0:
        _debug(f"ignoring malformed LISTEN_PID={listen_pid!r}")
        return NONE
    if parsed_pid != expected:
        # Meant for another process (e.g. our parent): not ours to pass on.
        return NONE
    count = _parse_uint(listen_fds)
    if count is None or count > _INT_MAX - SD_LISTEN_FDS_START:
        _debug(f"ignoring malformed LISTEN_FDS={listen_fds!r}")
        return NONE
    if count == 0:
        return NONE
    names: tuple[str, ...] = (_UNKNOWN_NAME,) * count
    fdnames = environ.get("LISTEN_FDNAMES")
    if fdnames is not None:
        split = tuple(fdnames.split(":"))
        if len(split) == count:
            names = split
        else:
            _debug(f"LISTEN_FDNAMES has {len(split)} names for {count} fds; using {_UNKNOWN_NAME!r}")
    return ListenFds(count, names)


def container_env(
    env: Sequence[str],
    count: int,
    names: Sequence[str] = (),
    *,
    container_pid: int = 1,
) -> list[str]:
    """The container's environment with LISTEN_* set for `count` fds, or removed if count is 0.

    Existing LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES entries (e.g. from config.json) are
    dropped first, so no stale value survives. LISTEN_FDNAMES is set only when there is one
    name per fd.
    """
    if count < 0:
        raise ValueError(f"negative LISTEN_FDS count: {count}")
    prefixes = tuple(f"{name}=" for name in VARIABLES)
    result = [entry for entry in env if not entry.startswith(prefixes)]
    if count == 0:
        return result
    result += [f"LISTEN_FDS={count}", f"LISTEN_PID={container_pid}"]
    if len(names) == count:
        if any(":" in name for name in names):
            raise ValueError(f"listen fd names must not contain ':': {list(names)}")
        result.append(f"LISTEN_FDNAMES={':'.join(names)}")
    return result


def unset_in_environ(environ: MutableMapping[str, str] | None = None) -> None:
    """Drop LISTEN_* from our environment (sd_listen_fds(unset_environment=1))."""
    target = os.environ if environ is None else environ
    for name in VARIABLES:
        target.pop(name, None)


def check_passed_fds(count: int) -> None:
    """fds 3..3+count-1 (LISTEN_FDS, then --preserve-fds) must be the caller's: open, and not
    close-on-exec. Everything this runtime opens itself is close-on-exec (O_CLOEXEC; the log
    file, the state directory's locked fd, the bus), so a close-on-exec fd in the range is one
    of ours and is never handed to the container (the locked state directory fd would make
    every later command on the id wait for the container); a hole is refused as runc does."""
    for fd in range(3, 3 + count):
        try:
            inheritable = os.get_inheritable(fd)
        except OSError:
            raise OciSystemdError(
                f"unable to stat preserved-fd {fd - 3} (of {count}): fd {fd} is not open",
                hint="--preserve-fds N passes fds 3..N+2, which must all be open",
            ) from None
        if not inheritable:
            raise OciSystemdError(
                f"preserved-fd {fd - 3} (fd {fd}) was not passed by the caller",
                hint="--preserve-fds N passes fds 3..N+2, which must all be open",
            )
