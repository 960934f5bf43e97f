# SPDX-License-Identifier: Apache-2.0
"""The fast path (cli/entry.py) and click (cli/app.py) read a command line the same way.

Both are built from cli/commands.py. For every hot command and every option declared for it
(each spelling, `--name=value` too, before and after the arguments), the same argv runs
through both parsers against a recording Runtime; the calls (constructor, method, arguments),
the log set-up and the output must be equal, and the fast path must have handled the line
itself (a fallback to click would make the comparison click against click).
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from oci_systemd.cli import app, entry
from oci_systemd.cli import commands as table
from oci_systemd.runtime import lifecycle
from oci_systemd.runtime.log import log

PROCESS = "{process}"  # replaced by a real process.json: exec's fast form needs one
FAST = sorted(entry._HANDLERS)

Call = tuple[str, tuple[Any, ...], dict[str, Any]]


class Recorder:
    """Stands in for Runtime: records its construction and every method call."""

    calls: list[Call] = []

    def __init__(self, **kwargs: Any) -> None:
        Recorder.calls.append(("Runtime", (), kwargs))

    def __getattr__(self, name: str) -> Any:
        def method(*args: Any, **kwargs: Any) -> Any:
            Recorder.calls.append((name, args, kwargs))
            return {"id": args[0], "status": "created", "pid": 42} if name == "state" else 0

        return method


@pytest.fixture
def process_file(tmp_path: Path) -> str:
    path = tmp_path / "process.json"
    path.write_text(json.dumps({"args": ["true"], "cwd": "/"}))
    return str(path)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    monkeypatch.setattr(lifecycle, "Runtime", Recorder)
    monkeypatch.delenv(table.ROOT_ENVVAR, raising=False)
    configured: list[Call] = []

    def configure(*args: Any, **kwargs: Any) -> None:
        Recorder.calls.append(("log.configure", args, kwargs))

    monkeypatch.setattr(log, "configure", configure)
    Recorder.calls = configured
    return configured


def _value(opt: table.Option) -> str:
    """A value each option's type accepts, never its default (a default would hide a drop)."""
    if opt.kind == "choice":
        return next(c for c in opt.choices if c != opt.default)
    if opt.kind in ("int", "uint"):
        return "7"
    return PROCESS if opt.dest == "process_file" else f"v-{opt.dest}"


def _spellings(opt: table.Option) -> Iterator[list[str]]:
    """Every way to write the option: each name, and `--name=value` for the long ones."""
    for name in opt.names:
        if not opt.takes_value:
            yield [name]
            continue
        value = _value(opt)
        yield [name, value] * (2 if opt.multiple else 1)
        if name.startswith("--"):
            yield [f"{name}={value}"]


def _cases() -> Iterator[list[str]]:
    for name in FAST:
        command = table.COMMANDS[name]
        required = ["--process", PROCESS] if name == "exec" else []
        yield [name, *required, "c1"]
        for opt in command.options:
            for spelling in _spellings(opt):
                yield [name, *required, *spelling, "c1"]
                if command.interspersed:
                    yield [name, "c1", *spelling]
    yield ["kill", "c1", "KILL"]
    yield ["kill", "--all", "c1", "9"]
    yield ["delete", "--", "-c1"]  # after --, a word that looks like an option is the id
    for opt in table.GLOBAL.options:
        if opt.kind != "version":
            for spelling in _spellings(opt):
                yield [*spelling, "state", "c1"]
    every_global = [w for o in table.GLOBAL.options if o.kind != "version" for w in next(_spellings(o))]
    every_create = [w for o in table.COMMANDS["create"].options for w in next(_spellings(o))]
    yield [*every_global, "create", *every_create, "c1"]


def _run(path: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[Any, list[Call], str]:
    Recorder.calls.clear()
    if path == "fast":
        status: Any = entry._dispatch(argv)
        assert status is not None, f"the fast path left {argv} to click"
    else:
        try:
            status = app.run_click(argv)
        except SystemExit as exc:  # run and exec exit with the container's status
            status = exc.code
    out = capsys.readouterr()
    return status, list(Recorder.calls), out.out


@pytest.mark.parametrize("argv", list(_cases()), ids=" ".join)
def test_fast_path_and_click_make_the_same_call(
    argv: list[str], recorded: list[Call], process_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [word.replace(PROCESS, process_file) for word in argv]
    fast = _run("fast", argv, capsys)
    slow = _run("click", argv, capsys)
    assert fast == slow
    assert [c[0] for c in fast[1]][:2] == ["log.configure", "Runtime"]  # both reached the runtime


def test_the_comparison_sees_a_dropped_option(
    recorded: list[Call], process_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recorder tells one option's value from its default (else parity proves nothing)."""
    with_option = _run("click", ["create", "--no-pivot", "c1"], capsys)
    without = _run("click", ["create", "c1"], capsys)
    assert with_option != without


def test_root_from_the_environment_on_both_paths(
    recorded: list[Call], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(table.ROOT_ENVVAR, "/env/root")
    for path in ("fast", "click"):
        _status, calls, _out = _run(path, ["state", "c1"], capsys)
        assert (
            "Runtime",
            (),
            {"root": "/env/root", "systemd_cgroup": False, "rootless_flag": "auto"},
        ) in calls, path
        _status, calls, _out = _run(path, ["--root", "/flag/root", "state", "c1"], capsys)
        assert (
            "Runtime",
            (),
            {"root": "/flag/root", "systemd_cgroup": False, "rootless_flag": "auto"},
        ) in calls, path
    for path in ("fast", "click"):  # --rootless reaches the runtime from both parsers
        _status, calls, _out = _run(path, ["--rootless", "true", "state", "c1"], capsys)
        assert (
            "Runtime",
            (),
            {"root": "/env/root", "systemd_cgroup": False, "rootless_flag": "true"},
        ) in calls
    monkeypatch.setenv(table.ROOT_ENVVAR, "")  # empty: the default, as click reads it
    for path in ("fast", "click"):
        _status, calls, _out = _run(path, ["state", "c1"], capsys)
        assert (
            "Runtime",
            (),
            {"root": table.DEFAULT_ROOT, "systemd_cgroup": False, "rootless_flag": "auto"},
        ) in calls, path


@pytest.mark.parametrize(
    "argv",
    [
        ["create", "-b=dir", "c1"],  # click: -b with the value "=dir"
        ["create", "-bdir", "c1"],
        ["delete", "-fa", "c1"],
        ["create", "--preserve-fds", "²", "c1"],  # str.isdigit, but not a number click reads
        ["create", "--preserve-fds", "-1", "c1"],
        ["--log-format", "xml", "state", "c1"],
        ["--debug=yes", "state", "c1"],
        ["exec", "-p", PROCESS, "c1", "--tty"],  # after the id, exec's words are the command
        ["exec", "-p", PROCESS, "-g", "x", "c1"],
        ["exec", "c1", "true"],
        ["kill", "c1", "TERM", "extra"],
        ["state"],
        ["state", "--help"],
        ["list"],
        ["--root"],
        ["-root", "/r", "state", "c1"],
    ],
    ids=" ".join,
)
def test_forms_the_fast_path_leaves_to_click(argv: list[str], recorded: list[Call]) -> None:
    assert entry._dispatch(argv) is None
    assert recorded == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["create", "--preserve-fds", "-1", "c1"], "-1 is not in the range x>=0"),
        (["--log-format", "xml", "state", "c1"], "'xml' is not one of 'text', 'json'"),
        (["exec", "-p", "f", "-g", "x", "c1"], "'x' is not a valid integer"),
        (["--debug=yes", "state", "c1"], "Option '--debug' does not take a value"),
        (["kill", "c1", "TERM", "extra"], "Got unexpected extra argument (extra)"),
        (["delete"], "Missing argument 'CONTAINER_ID'"),
    ],
)
def test_values_both_paths_refuse_are_click_usage_errors(
    argv: list[str], message: str, recorded: list[Call], capsys: pytest.CaptureFixture[str]
) -> None:
    """The fast path never accepts what click refuses: it leaves the line to click (exit 2)."""
    assert entry._dispatch(argv) is None
    assert app.run_click(argv) == 2
    assert message in capsys.readouterr().err
    assert "Runtime" not in [call[0] for call in recorded]


@pytest.mark.parametrize(
    "option", [o for o in table.GLOBAL.options if o.kind != "version"], ids=lambda o: o.names[0]
)
def test_global_options_after_the_verb_are_refused_on_both_paths(
    option: table.Option, recorded: list[Call], capsys: pytest.CaptureFixture[str]
) -> None:
    """As runc: global options go before the command (`runc state --root x` is an error)."""
    argv = ["state", *next(_spellings(option)), "c1"]
    assert entry._dispatch(argv) is None
    assert app.run_click(argv) == 2
    assert f"No such option '{option.names[0]}'" in capsys.readouterr().err
    assert "Runtime" not in [call[0] for call in recorded]


def test_version_is_the_same_on_both_paths(recorded: list[Call], capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--version"], ["-v"], ["--root", "/r", "--version", "state", "c1"]):
        fast = _run("fast", argv, capsys)
        slow = _run("click", argv, capsys)
        assert fast == slow and fast[0] == 0 and fast[2].startswith("oci-systemd version ")
        assert fast[1] == []  # no log set-up, no runtime: --version wins


@pytest.mark.parametrize("name", sorted(table.COMMANDS))
def test_click_bodies_take_exactly_the_declared_parameters(name: str) -> None:
    command = app.cli.commands[name]
    assert command.callback is not None
    params = set(inspect.signature(inspect.unwrap(command.callback)).parameters) - {"opts"}
    declared = table.COMMANDS[name]
    assert params == {o.dest for o in declared.options} | {a.name for a in declared.arguments}


def test_click_has_every_declared_command_and_option() -> None:
    ctx = click.Context(app.cli)
    assert set(app.cli.list_commands(ctx)) == {*table.COMMANDS, "sandbox"}
    for name, declared in [("", table.GLOBAL), *table.COMMANDS.items()]:
        command = app.cli.commands[name] if name else app.cli
        options = {p.name: p for p in command.params if isinstance(p, click.Option)}
        for opt in declared.options:
            assert options[opt.dest].opts == list(opt.names), (name, opt.dest)
            assert options[opt.dest].hidden == opt.hidden, (name, opt.dest)


def _new_modules(module: str) -> set[str]:
    code = f"import sys; before = set(sys.modules); import {module}; print(*set(sys.modules) - before)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_declaration_imports_nothing() -> None:
    """Every engine call loads commands.py: it must stay plain data (__future__ is loaded by
    the package's first module anyway)."""
    assert _new_modules("oci_systemd.cli.commands") == {
        "__future__",
        "oci_systemd",
        "oci_systemd.cli",
        "oci_systemd.cli.commands",
    }


def test_no_import_cycle_between_the_two_parsers() -> None:
    """entry.py reaches app.py only lazily, for the lines it leaves to click; app.py never
    needs entry.py (what both share is in commands.py)."""
    assert not {"click", "oci_systemd.cli.app"} & _new_modules("oci_systemd.cli.entry")
    assert "oci_systemd.cli.entry" not in _new_modules("oci_systemd.cli.app")
