# SPDX-License-Identifier: Apache-2.0
"""packaging/manpages.py and packaging/completions.py: pages and scripts follow the click commands."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest
from click.shell_completion import ShellComplete

from oci_systemd import __version__
from oci_systemd.cli import commands as table
from oci_systemd.cli.app import cli

REPO = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    path = REPO / "packaging" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"packaging_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


manpages = _load("manpages")
completions = _load("completions")


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    result: dict[str, str] = manpages.render_pages(version="9.9.9", date="2024-01-02")
    return result


def _expected_names() -> set[str]:
    from oci_systemd.devtools.sandbox import sandbox

    ctx = click.Context(cli)
    names = {"oci-systemd.8"}
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        assert cmd is not None
        if not cmd.hidden:
            names.add(f"oci-systemd-{name}.8")
    sub_ctx = click.Context(sandbox)
    names |= {f"oci-systemd-sandbox-{name}.8" for name in sandbox.list_commands(sub_ctx)}
    return names


def test_one_page_per_command(pages: dict[str, str]) -> None:
    assert set(pages) == _expected_names()
    assert "oci-systemd-create.8" in pages
    assert "oci-systemd-sandbox-up.8" in pages  # the lazy group's real subcommands


@pytest.mark.parametrize(
    "section", ["NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "SEE ALSO"], ids=str.lower
)
def test_every_page_has_the_sections(pages: dict[str, str], section: str) -> None:
    for name, text in pages.items():
        assert f"\n.SH {section}\n" in text, f"{name} lacks {section}"


def test_title_line(pages: dict[str, str]) -> None:
    assert '.TH "OCI-SYSTEMD-CREATE" "8" "2024-01-02" "oci-systemd 9.9.9"' in pages["oci-systemd-create.8"]


def test_options_follow_click(pages: dict[str, str]) -> None:
    create = cli.commands["create"]
    text = pages["oci-systemd-create.8"]
    for param in create.params:
        if isinstance(param, click.Option) and not param.hidden:
            for opt in param.opts:
                assert manpages.escape(opt) in text, f"{opt} missing from the create page"
    root = pages["oci-systemd.8"]
    assert "\\-\\-root" in root and "OCI_SYSTEMD_ROOT" in root
    # Hidden options stay hidden; --rootless is documented (rootless.check_flag).
    assert "\\-\\-criu" not in root and "\\-\\-rootless" in root


def test_root_page_lists_every_command(pages: dict[str, str]) -> None:
    root = pages["oci-systemd.8"]
    for name in _expected_names() - {"oci-systemd.8"}:
        if name.count("-") == 2:  # top-level commands only
            assert f"\\fB{manpages.escape(name[:-2])}\\fR(8)" in root, name


def test_escaping() -> None:
    assert manpages.escape(".dot\n'quote\na-b\\c") == "\\&.dot\n\\&'quote\na\\-b\\ec"


def test_date_from_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert manpages.build_date() == "1970-01-01"


def test_write_manpages(tmp_path: Path) -> None:
    written = manpages.write_manpages(tmp_path, version=__version__, date="2024-01-02")
    assert {p.name for p in written} == _expected_names()
    assert all(p.read_text().startswith('.\\"') for p in written)


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_groff_renders_without_warnings(tmp_path: Path) -> None:
    for path in manpages.write_manpages(tmp_path, version=__version__, date="2024-01-02"):
        proc = subprocess.run(
            ["groff", "-man", "-Tutf8", "-ww", "-z", str(path)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0 and not proc.stderr, f"{path.name}: {proc.stderr}"


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_renders_create(tmp_path: Path) -> None:
    (path,) = [p for p in manpages.write_manpages(tmp_path) if p.name == "oci-systemd-create.8"]
    proc = subprocess.run(
        ["man", "-l", str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin"},
    )
    text = " ".join(re.sub(".\b", "", proc.stdout).split())  # no overstrike, no justification
    assert "oci-systemd-create - Create a container" in text
    assert "-b, --bundle TEXT Path to the bundle directory." in text


@pytest.mark.parametrize("shell", completions.SHELLS)
def test_completion_scripts(shell: str) -> None:
    script = completions.completion_source(shell)
    assert "_OCI_SYSTEMD_COMPLETE" in script
    assert f"{shell}_complete" in script


def test_versions_agree() -> None:
    """pyproject.toml, debian/changelog and the RPM spec carry the same version."""
    changelog = (REPO / "packaging/debian/changelog").read_text().splitlines()[0]
    match = re.match(r"oci-systemd \(([^)-]+)(-[^)]+)?\)", changelog)
    assert match is not None, changelog
    spec = (REPO / "packaging/rpm/oci-systemd.spec").read_text()
    spec_version = re.search(r"^Version:\s*(\S+)", spec, re.M)
    assert spec_version is not None
    assert match.group(1) == spec_version.group(1) == __version__


# -- every declared option, from cli/commands.py ---------------------------------------------

NAMES = ["", *sorted(table.COMMANDS)]  # "": the global options, on the oci-systemd(8) page


def _declared(name: str) -> table.Command:
    return table.COMMANDS[name] if name else table.GLOBAL


def _visible(command: table.Command) -> set[str]:
    return {name for opt in command.options if not opt.hidden for name in opt.names} | {"-h", "--help"}


def _listed_options(page: str) -> set[str]:
    """The option names of a page's OPTIONS (or GLOBAL OPTIONS) section."""
    match = re.search(r"^\.SH (?:GLOBAL )?OPTIONS\n(.*?)^\.(?:SH|PP)\b", page, re.M | re.S)
    assert match is not None, "no OPTIONS section"
    terms = re.findall(r"^\.TP\n\\fB(.*?)\\fR$", match.group(1), re.M)
    return {part.split(" ")[0] for term in terms for part in term.replace("\\-", "-").split(", ")}


@pytest.mark.parametrize("name", NAMES, ids=lambda n: n or "global")
def test_pages_list_every_declared_option(pages: dict[str, str], name: str) -> None:
    page = pages[f"oci-systemd-{name}.8" if name else "oci-systemd.8"]
    assert _listed_options(page) == _visible(_declared(name))


@pytest.mark.parametrize("name", NAMES, ids=lambda n: n or "global")
def test_completion_offers_every_declared_option(name: str) -> None:
    complete = ShellComplete(cli, {}, "oci-systemd", completions.COMPLETE_VAR)
    offered = {item.value for item in complete.get_completions([name] if name else [], "-")}
    assert offered == _visible(_declared(name))


def test_the_installed_entry_answers_completion() -> None:
    """What the generated scripts ask at completion time, through the console script's code."""
    env = dict(
        os.environ, _OCI_SYSTEMD_COMPLETE="bash_complete", COMP_WORDS="oci-systemd create --", COMP_CWORD="2"
    )
    out = subprocess.run(
        [sys.executable, "-c", completions._MAIN],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
    )
    offered = {line.split(",", 1)[1] for line in out.stdout.splitlines()}
    assert offered == {n for n in _visible(table.COMMANDS["create"]) if n.startswith("--")}
