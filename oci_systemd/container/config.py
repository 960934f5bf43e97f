# SPDX-License-Identifier: Apache-2.0
"""The one model of config.json: TypedDict views of the raw, validated dict.

`oci_systemd.runtime.spec` validates config.json and hands the very same dict on: to the
resources translation on the host and, inside the idler plan, to namespaces, mounts and
process on the container side. This module says what that dict holds, once, for all of them.
The classes exist only for the type checker (they sit behind `TYPE_CHECKING`, so importing
this module costs nothing at run time and the idler imports no `typing`); annotate with
`config.Config` etc. under `from __future__ import annotations`.

Keys follow the OCI runtime-spec v1.2 (config.md, config-linux.md); every key is optional
here (total=False, so that `(cfg.get("linux") or {})` reads naturally), because validation
fills no defaults in. The keys marked REQUIRED are the ones spec validation refuses a config
without: code may index those (`process["args"]`). A JSON null counts as absent in
validation, so read the other keys with `.get()`, never with `in`. The enum values these keys
take are the tables of `oci_systemd.container.abi` and `.seccomp`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypedDict

    class User(TypedDict, total=False):
        uid: int  # REQUIRED
        gid: int  # REQUIRED
        umask: int
        additionalGids: list[int]
        username: str

    class Capabilities(TypedDict, total=False):
        bounding: list[str]
        effective: list[str]
        inheritable: list[str]
        permitted: list[str]
        ambient: list[str]

    class Rlimit(TypedDict):
        type: str
        soft: int
        hard: int

    class ConsoleSize(TypedDict):
        height: int
        width: int

    # "class" (REQUIRED) is a keyword, hence the functional form.
    IOPriority = TypedDict("IOPriority", {"class": str, "priority": int}, total=False)

    class Scheduler(TypedDict, total=False):
        policy: str  # REQUIRED
        nice: int
        priority: int
        flags: list[str]
        runtime: int
        deadline: int
        period: int

    class ExecCPUAffinity(TypedDict, total=False):
        initial: str
        final: str

    class Process(TypedDict, total=False):
        terminal: bool
        consoleSize: ConsoleSize
        user: User
        args: list[str]  # REQUIRED
        commandLine: str
        env: list[str]
        cwd: str  # REQUIRED
        capabilities: Capabilities
        rlimits: list[Rlimit]
        noNewPrivileges: bool
        apparmorProfile: str
        oomScoreAdj: int
        selinuxLabel: str
        ioPriority: IOPriority
        scheduler: Scheduler
        execCPUAffinity: ExecCPUAffinity

    class Root(TypedDict, total=False):
        path: str  # REQUIRED
        readonly: bool

    class IDMapping(TypedDict):
        containerID: int
        hostID: int
        size: int

    class Mount(TypedDict, total=False):
        destination: str  # REQUIRED
        source: str
        type: str
        options: list[str]
        uidMappings: list[IDMapping]
        gidMappings: list[IDMapping]

    class Hook(TypedDict, total=False):
        path: str  # REQUIRED
        args: list[str]
        env: list[str]
        timeout: int

    class Hooks(TypedDict, total=False):
        prestart: list[Hook]
        createRuntime: list[Hook]
        createContainer: list[Hook]
        startContainer: list[Hook]
        poststart: list[Hook]
        poststop: list[Hook]

    class Namespace(TypedDict, total=False):
        type: str  # REQUIRED
        path: str

    class Device(TypedDict, total=False):
        type: str  # REQUIRED
        path: str  # REQUIRED
        major: int
        minor: int
        fileMode: int
        uid: int
        gid: int

    class DeviceRule(TypedDict, total=False):
        allow: bool  # REQUIRED
        type: str  # "a", "b" or "c"; absent means "a"
        major: int  # absent or -1 (Go generators' spelling): any
        minor: int
        access: str

    class Memory(TypedDict, total=False):
        limit: int
        reservation: int
        swap: int
        kernel: int
        kernelTCP: int
        swappiness: int
        disableOOMKiller: bool
        useHierarchy: bool
        checkBeforeUpdate: bool

    class CPU(TypedDict, total=False):
        shares: int
        quota: int
        burst: int
        period: int
        realtimeRuntime: int
        realtimePeriod: int
        cpus: str
        mems: str
        idle: int

    class Pids(TypedDict, total=False):
        limit: int

    class WeightDevice(TypedDict, total=False):
        major: int  # REQUIRED
        minor: int  # REQUIRED
        weight: int
        leafWeight: int

    class ThrottleDevice(TypedDict, total=False):
        major: int  # REQUIRED
        minor: int  # REQUIRED
        rate: int  # REQUIRED in runtime-spec, but runc and we read a missing one as 0

    class BlockIO(TypedDict, total=False):
        weight: int
        leafWeight: int
        weightDevice: list[WeightDevice]
        throttleReadBpsDevice: list[ThrottleDevice]
        throttleWriteBpsDevice: list[ThrottleDevice]
        throttleReadIOPSDevice: list[ThrottleDevice]
        throttleWriteIOPSDevice: list[ThrottleDevice]

    class HugepageLimit(TypedDict):
        pageSize: str
        limit: int

    class NetworkPriority(TypedDict):
        name: str
        priority: int

    class Network(TypedDict, total=False):
        classID: int
        priorities: list[NetworkPriority]

    class Rdma(TypedDict, total=False):
        hcaHandles: int
        hcaObjects: int

    class Resources(TypedDict, total=False):
        devices: list[DeviceRule]
        memory: Memory
        cpu: CPU
        pids: Pids
        blockIO: BlockIO
        hugepageLimits: list[HugepageLimit]
        network: Network
        rdma: dict[str, Rdma]
        unified: dict[str, str]

    class SeccompArg(TypedDict, total=False):
        index: int  # REQUIRED
        value: int  # REQUIRED
        valueTwo: int
        op: str  # REQUIRED

    class Syscall(TypedDict, total=False):
        names: list[str]  # REQUIRED
        action: str  # REQUIRED
        errnoRet: int
        args: list[SeccompArg]

    class Seccomp(TypedDict, total=False):
        defaultAction: str  # REQUIRED
        defaultErrnoRet: int
        architectures: list[str]
        flags: list[str]
        listenerPath: str
        listenerMetadata: str
        syscalls: list[Syscall]

    class IntelRdt(TypedDict, total=False):
        closID: str
        l3CacheSchema: str
        memBwSchema: str
        schemata: list[str]
        enableCMT: bool
        enableMBM: bool
        enableMonitoring: bool

    class Personality(TypedDict, total=False):
        domain: str  # REQUIRED
        flags: list[str]

    class TimeOffset(TypedDict, total=False):
        secs: int
        nanosecs: int

    class TimeOffsets(TypedDict, total=False):
        boottime: TimeOffset
        monotonic: TimeOffset

    class NetDevice(TypedDict, total=False):
        name: str

    class MemoryPolicy(TypedDict, total=False):
        mode: str  # REQUIRED
        nodes: str
        flags: list[str]

    class Linux(TypedDict, total=False):
        namespaces: list[Namespace]
        uidMappings: list[IDMapping]
        gidMappings: list[IDMapping]
        timeOffsets: TimeOffsets
        devices: list[Device]
        netDevices: dict[str, NetDevice]
        cgroupsPath: str
        resources: Resources
        rootfsPropagation: str
        seccomp: Seccomp
        sysctl: dict[str, str]
        maskedPaths: list[str]
        readonlyPaths: list[str]
        mountLabel: str
        intelRdt: IntelRdt
        personality: Personality
        memoryPolicy: MemoryPolicy

    class Config(TypedDict, total=False):
        ociVersion: str  # REQUIRED
        root: Root
        mounts: list[Mount]
        process: Process
        hostname: str
        domainname: str
        hooks: Hooks
        annotations: dict[str, str]
        linux: Linux
