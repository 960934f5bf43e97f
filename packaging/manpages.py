#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Write section-8 man pages (roff) for every oci-systemd command, from click's own model.

    python3 packaging/manpages.py [--outdir DIR] [--version V] [--date YYYY-MM-DD]

writes `oci-systemd.8`, one `oci-systemd-<command>.8` per command and, for command groups,
`oci-systemd-<group>-<command>.8` (the `sandbox` subcommands). Nothing is written by hand: the
pages follow click's model of `oci_systemd.cli.app.cli`, whose options are generated from the
declaration in `oci_systemd/cli/commands.py`, so they cannot drift from `--help`.

Importable: `write_manpages(outdir)` returns the paths written; `render_pages()` returns
{filename: text} without touching the disk (the unit tests use it).

The date comes from SOURCE_DATE_EPOCH when set (reproducible builds), else today.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

PROG = "oci-systemd"
SECTION = "8"
MANUAL = "System Administration"

# Lazily registered groups in cli/app.py and where the real group lives.
LAZY_GROUPS = {"sandbox": ("oci_systemd.devtools.sandbox", "sandbox")}

EXIT_STATUS = [
    ("0", "Success."),
    ("1", "The operation failed; the reason is printed on standard error (and sent to --log)."),
    ("2", "Usage error: unknown option, missing or invalid argument."),
    (
        "126",
        "start, run: the container's program exists but could not be executed (permission denied).",
    ),
    ("127", "start, run: the container's program was not found."),
    ("130", "Interrupted (SIGINT)."),
]
RUN_EXIT_NOTE = (
    "Without --detach, run exits with the exit status of the container's init process, or 128+N "
    "when it was killed by signal N."
)


@dataclass(frozen=True)
class Page:
    """One command in the tree: its path below the root (() for the root itself)."""

    path: tuple[str, ...]
    command: click.Command

    @property
    def name(self) -> str:
        return "-".join((PROG, *self.path))

    @property
    def filename(self) -> str:
        return f"{self.name}.{SECTION}"


def _real_command(name: str, command: click.Command) -> click.Command:
    """The real group behind a lazily registered one (cli/app.py's `_register_lazy`)."""
    if name in LAZY_GROUPS:
        import importlib

        module, attr = LAZY_GROUPS[name]
        real = getattr(importlib.import_module(module), attr)
        if isinstance(real, click.Command):
            return real
    return command


def root_command() -> click.Group:
    from oci_systemd.cli.app import cli

    return cli


def iter_pages(root: click.Group | None = None) -> Iterator[Page]:
    """The root, then every visible command depth-first, in `--help` order."""
    group = root if root is not None else root_command()
    yield Page((), group)
    yield from _children((), group)


def _subcommands(group: click.Group, path: tuple[str, ...]) -> list[tuple[str, click.Command]]:
    ctx = click.Context(group, info_name=" ".join((PROG, *path)), **group.context_settings)
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        out.append((name, _real_command(name, cmd) if not path else cmd))
    return out


def _children(path: tuple[str, ...], group: click.Group) -> Iterator[Page]:
    for name, cmd in _subcommands(group, path):
        sub = (*path, name)
        yield Page(sub, cmd)
        if isinstance(cmd, click.Group):
            yield from _children(sub, cmd)


# -- roff ----------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Text for roff: backslashes, hyphens (so they stay ASCII minus signs) and control lines."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.split("\n"))


_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    """Escape, and set `code` spans in bold."""
    parts = _CODE.split(text)
    return "".join(escape(p) if i % 2 == 0 else f"\\fB{escape(p)}\\fR" for i, p in enumerate(parts))


def _paragraphs(text: str) -> str:
    """click help text (blank-line paragraphs, `\\b` for verbatim ones) as roff paragraphs."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text.strip()):
        if not para.strip():
            continue
        if para.startswith("\b"):
            body = para[1:].strip("\n")
            out += [".PP", ".nf", escape(body), ".fi"]
        else:
            out += [".PP", _inline(" ".join(line.strip() for line in para.splitlines()))]
    return "\n".join(out)


def _th(page: Page, version: str, date: str) -> str:
    return f'.TH "{page.name.upper()}" "{SECTION}" "{date}" "{PROG} {version}" "{MANUAL}"'


def _help(cmd: click.Command) -> str:
    return (cmd.help or cmd.short_help or "").strip()


def _short(cmd: click.Command) -> str:
    text = cmd.short_help or _first_sentence(_help(cmd))
    return text.rstrip(".")


def _first_sentence(text: str) -> str:
    para = text.split("\n\n")[0].replace("\n", " ").strip()
    match = re.match(r"(.+?\.)(\s|$)", para)
    return match.group(1) if match else para


def _context(page: Page, root: click.Group) -> click.Context:
    """A context chain root -> ... -> page.command, as click builds it when parsing."""
    ctx = click.Context(root, info_name=PROG, **root.context_settings)
    cmd: click.Command = root
    for depth, name in enumerate(page.path):
        if depth == len(page.path) - 1:
            cmd = page.command
        else:
            assert isinstance(cmd, click.Group)
            found = cmd.get_command(ctx, name)
            assert found is not None
            cmd = _real_command(name, found) if depth == 0 else found
        ctx = click.Context(cmd, info_name=name, parent=ctx, **cmd.context_settings)
    return ctx


def _options(cmd: click.Command, ctx: click.Context) -> list[tuple[str, str]]:
    out = []
    for param in cmd.get_params(ctx):
        if not isinstance(param, click.Option):
            continue
        record = param.get_help_record(ctx)
        if record is None:  # hidden
            continue
        out.append(record)
    return out


def _arguments(cmd: click.Command) -> list[click.Argument]:
    return [p for p in cmd.params if isinstance(p, click.Argument)]


def _synopsis(page: Page, ctx: click.Context) -> str:
    words = [f"\\fB{escape(PROG)}\\fR"]
    if page.path:
        words.append("[\\fIGLOBAL OPTIONS\\fR]")
    for name in page.path:
        words.append(f"\\fB{escape(name)}\\fR")
    for piece in page.command.collect_usage_pieces(ctx):
        words.append(f"\\fI{escape(piece)}\\fR" if piece.isupper() else escape(piece))
    return ".SH SYNOPSIS\n.nh\n.ad l\n" + " ".join(words) + "\n.ad\n.hy"


def _option_list(records: Sequence[tuple[str, str]]) -> str:
    out = []
    for opts, text in records:
        out += [".TP", f"\\fB{escape(opts)}\\fR", _inline(text) if text else ""]
    return "\n".join(line for line in out if line != "")


def _envvars(cmd: click.Command) -> list[tuple[str, str]]:
    out = []
    for param in cmd.params:
        env = getattr(param, "envvar", None)
        if isinstance(param, click.Option) and isinstance(env, str) and not param.hidden:
            out.append((env, f"Default for {param.opts[-1]}."))
    return out


def render_page(page: Page, root: click.Group, *, version: str, date: str, pages: Sequence[Page]) -> str:
    cmd = page.command
    ctx = _context(page, root)
    lines = [
        '.\\" Generated by packaging/manpages.py from oci_systemd.cli.app; do not edit.',
        _th(page, version, date),
        ".nh",
        ".SH NAME",
        f"{escape(page.name)} \\- {_inline(_short(cmd) if page.path else _root_summary(cmd))}",
        _synopsis(page, ctx),
        ".SH DESCRIPTION",
        _paragraphs(_help(cmd)) if page.path else _root_description(cmd),
    ]
    arguments = _arguments(cmd)
    if arguments:
        lines.append(".SH ARGUMENTS")
        for arg in arguments:
            name = arg.human_readable_name
            extra = []
            if arg.nargs == -1:
                extra.append("may be repeated")
            if not arg.required:
                default = arg.default
                # click >= 8.2 marks "no default" with a sentinel object, older ones with None.
                has_default = isinstance(default, str | int | float) and arg.nargs == 1
                extra.append(f"optional, default: {default}" if has_default else "optional")
            text = "; ".join(extra) or "required"
            lines += [".TP", f"\\fI{escape(name)}\\fR", escape(text[0].upper() + text[1:] + ".")]
    options = _options(cmd, ctx)
    if options:
        lines.append(".SH OPTIONS" if page.path else ".SH GLOBAL OPTIONS")
        lines.append(_option_list(options))
    if page.path:
        lines += [
            ".PP",
            f"The global options (\\fB\\-\\-root\\fR, \\fB\\-\\-log\\fR, ...) go before the command "
            f"name; see \\fB{escape(PROG)}\\fR(8).",
        ]
    if isinstance(cmd, click.Group):
        subs = [
            p for p in pages if len(p.path) == len(page.path) + 1 and p.path[: len(page.path)] == page.path
        ]
        if subs:
            lines.append(".SH COMMANDS")
            for sub in subs:
                lines += [
                    ".TP",
                    f"\\fB{escape(sub.path[-1])}\\fR",
                    f"{_inline(_short(sub.command))}. See \\fB{escape(sub.name)}\\fR({SECTION}).",
                ]
    env = _envvars(cmd)
    if env:
        lines.append(".SH ENVIRONMENT")
        for name, text in env:
            lines += [".TP", f"\\fB{escape(name)}\\fR", escape(text)]
    if not page.path:
        lines += _root_extra_sections()
    lines.append(".SH EXIT STATUS")
    for code, text in EXIT_STATUS:
        lines += [".TP", f"\\fB{code}\\fR", escape(text)]
    if page.path in ((), ("run",)):
        lines += [".PP", escape(RUN_EXIT_NOTE)]
    lines += [".SH SEE ALSO", _see_also(page, pages)]
    return "\n".join(lines) + "\n"


def _root_summary(cmd: click.Command) -> str:
    text = _first_sentence(_help(cmd))
    # "oci-systemd: an OCI container runtime ..." -> "an OCI container runtime ..."
    prefix = f"{PROG}:"
    return (text[len(prefix) :].strip() if text.startswith(prefix) else text).rstrip(".")


def _root_description(cmd: click.Command) -> str:
    return "\n".join(
        [
            ".PP",
            f"\\fB{escape(PROG)}\\fR is an OCI runtime (runtime-spec 1.2) whose containers are systemd "
            "units. "
            "Its command line follows runc's, so podman, conmon and containerd can drive it.",
            ".PP",
            "\\fBcreate\\fR starts a transient systemd scope (\\fBoci\\-systemd\\-\\fR\\fIID\\fR"
            "\\fB.scope\\fR, Delegate=yes) over D\\-Bus around a small \\fIidler\\fR process that "
            "sets up the container's namespaces, mounts and process attributes and then waits; "
            "\\fBstart\\fR tells the idler to execute the container's program. \\fBstate\\fR and "
            "\\fBkill\\fR ask systemd (unit state, KillUnit); the runtime keeps its own record of what "
            "systemd cannot know under \\-\\-root.",
            ".PP",
            "Lifecycle events are written to the journal with stable MESSAGE_IDs, so "
            "\\fBjournalctl \\-u oci\\-systemd\\-\\fR\\fIID\\fR\\fB.scope\\fR tells a container's story.",
        ]
    )


def _root_extra_sections() -> list[str]:
    return [
        ".SH FILES",
        ".TP",
        "\\fI/run/oci\\-systemd/\\fR\\fIID\\fR\\fI/\\fR",
        "The state of container \\fIID\\fR (\\fIstate.json\\fR) and the idler's socket "
        "(default \\-\\-root).",
        ".TP",
        "\\fI/usr/lib/systemd/catalog/oci\\-systemd.catalog\\fR",
        "Explanations of the journal entries (\\fBjournalctl \\-x\\fR).",
        ".TP",
        "\\fI/lib/systemd/system/oci\\-container@.service\\fR",
        "Template unit that runs a bundle as a systemd service (when shipped by the package).",
        ".TP",
        "\\fI/lib/systemd/system/oci\\-unit@.service\\fR",
        "The same in the unit mode (\\fBOCI_SYSTEMD_PLACEMENT=service\\fR): the container is the "
        "service, its init the service's main process; nothing of oci\\-systemd stays resident.",
    ]


def _see_also(page: Page, pages: Sequence[Page]) -> str:
    refs: list[str] = []
    if page.path:
        refs.append(PROG)
        if len(page.path) > 1:
            refs.append("-".join((PROG, *page.path[:-1])))
    else:
        refs += [p.name for p in pages if len(p.path) == 1]
    out = [f"\\fB{escape(r)}\\fR({SECTION})" for r in refs]
    out += ["\\fBsystemd.scope\\fR(5)", "\\fBjournalctl\\fR(1)", "\\fBrunc\\fR(8)"]
    return ",\n".join(out)


# -- files ---------------------------------------------------------------------------------------


def build_date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        datetime.datetime.fromtimestamp(int(epoch), tz=datetime.UTC)
        if epoch and epoch.isdigit()
        else datetime.datetime.now(tz=datetime.UTC)
    )
    return when.strftime("%Y-%m-%d")


def package_version() -> str:
    from oci_systemd import __version__

    return str(__version__)


def render_pages(
    root: click.Group | None = None, *, version: str | None = None, date: str | None = None
) -> dict[str, str]:
    """{filename: roff text} for every page."""
    group = root if root is not None else root_command()
    pages = list(iter_pages(group))
    v = version or package_version()
    d = date or build_date()
    return {p.filename: render_page(p, group, version=v, date=d, pages=pages) for p in pages}


def write_manpages(
    outdir: str | os.PathLike[str], *, version: str | None = None, date: str | None = None
) -> list[Path]:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_pages(version=version, date=date).items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--outdir", default="build/man", help="directory for the .8 files (build/man)")
    parser.add_argument("--version", default=None, help="version in the footer (the package's)")
    parser.add_argument("--date", default=None, help="date in the footer (SOURCE_DATE_EPOCH or today)")
    args = parser.parse_args(argv)
    for path in write_manpages(args.outdir, version=args.version, date=args.date):
        print(path)
    return 0


if __name__ == "__main__":
    # Run from a source tree: import the package next to packaging/.
    sys.path.insert(0, os.fspath(Path(__file__).resolve().parent.parent))
    sys.exit(main())
