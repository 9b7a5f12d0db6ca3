"""The README and docs/ as a reader uses them: links that lead somewhere, ``melkit`` command lines that the
real CLI accepts, and a README short enough to be a door (the method and measurements live in docs/).

Command lines are parsed, never run: each is walked down melkit's click groups to its command, whose
``make_context`` then checks the option names, the number of arguments and each value's type, range or
choice. No melkit option declares ``click.Path(exists=True)``, so paths need not exist here (a test below
keeps it that way); placeholders (``RUN``, ``MODEL_int8.tflite``, ``<...>``) are plain values.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from melkit.cli import main

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 250

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_SEPARATORS = {"&&", "||", ";", "|"}


def code_lines(text: str) -> list[str]:
    """The lines of ``text``'s fenced code blocks, shell continuations (``\\`` at the end of a line) joined."""
    lines, fenced, joined = [], False, ""
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            continue
        if line.rstrip().endswith("\\"):
            joined += line.rstrip()[:-1] + " "
            continue
        lines.append(joined + line)
        joined = ""
    return lines


def melkit_commands(line: str) -> list[list[str]]:
    """The ``melkit`` invocations on one shell line, each as its arguments after ``melkit``: ``$`` prompts
    and ``# comments`` dropped, split at ``&&``, ``||``, ``|`` and ``;`` (also ``cmd;``), ``.venv/bin/melkit`` counted; optional groups
    ``[--opt VALUE]`` taken as given, and ``...`` (more of the same) left out."""
    try:
        words = shlex.split(line.strip().removeprefix("$ "), comments=True)
    except ValueError:  # prose in an indented block, an unclosed quote: not a command
        return []
    commands, current = [], []
    for word in [w for word in words for w in ([word[:-1], ";"] if word.endswith(";") else [word])] + [";"]:
        if word in _SEPARATORS:
            if current and (current[0] == "melkit" or current[0].endswith("/melkit")):
                commands.append(current[1:])
            current = []
            continue
        word = word.strip("[]")
        if word and word != "...":
            current.append(word)
    return commands


def parse_command(args: list[str]) -> click.Command:
    """Parse ``melkit ARGS`` with the real CLI without running it: the command reached, or click's
    UsageError (unknown command or option, missing or extra argument, bad value)."""
    cmd, name, rest = main, "melkit", list(args)
    while isinstance(cmd, click.Group):
        if not rest or rest[0].startswith("-"):
            raise click.UsageError(f"{name}: no subcommand in {shlex.join(args)!r}")
        name, rest = rest[0], rest[1:]
        sub = cmd.get_command(click.Context(cmd), name)
        if sub is None:
            raise click.UsageError(f"no such command: {name!r} in {shlex.join(args)!r}")
        cmd = sub
    cmd.make_context(name, rest, resilient_parsing=False)
    return cmd


def shown_commands() -> list[tuple[str, list[str]]]:
    """Every ``melkit`` command line in a code block of the README and docs/*.md, with its page."""
    return [(page.relative_to(REPO).as_posix(), args)
            for page in PAGES for line in code_lines(page.read_text()) for args in melkit_commands(line)]


def relative_links(page: Path, anchors: bool = False) -> list[str]:
    """The relative link targets of a Markdown page (no URLs, no in-page anchors); ``#anchor`` stripped
    unless ``anchors``."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    targets = [t if anchors else t.split("#")[0] for t in _LINK.findall(text)]
    return [t for t in targets if t and not t.startswith("#") and not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def heading_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a Markdown page's headings: lower case, punctuation dropped, spaces to ``-``."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_readme_is_a_door():
    n = len((REPO / "README.md").read_text().splitlines())
    assert n < README_MAX_LINES, f"README.md has {n} lines; move method and measurements into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_point_to_files(page):
    missing = [t for t in relative_links(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(REPO)} links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_anchors_name_headings(page):
    wrong = [t for t in relative_links(page, anchors=True) if "#" in t and t.split("#")[0].endswith(".md")
             and t.split("#")[1] not in heading_anchors(page.parent / t.split("#")[0])]
    assert not wrong, f"{page.relative_to(REPO)} links to headings that are not there: {wrong}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(REPO / t).resolve() for t in relative_links(REPO / "README.md")}
    orphans = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link: {orphans}"


def test_shown_commands_parse_with_the_cli():
    shown = shown_commands()
    assert len(shown) >= 20, shown  # the README's examples and the docs' commands are found at all
    bad = []
    for page, args in shown:
        try:
            parse_command(args)
        except click.ClickException as e:
            bad.append(f"{page}: melkit {shlex.join(args)}: {e.format_message()}")
    assert not bad, "\n".join(bad)


def test_every_command_has_an_example_in_the_readme():
    readme = {tuple(args[:2]) if args[:1] == ["data"] else (args[0],)
              for line in code_lines((REPO / "README.md").read_text()) for args in melkit_commands(line) if args}
    wanted = {(name,) for name in main.commands if name != "data"}
    wanted |= {("data", name) for name in main.commands["data"].commands}
    assert wanted <= readme, f"commands without an example in the README: {sorted(wanted - readme)}"


def test_no_option_needs_an_existing_path():
    """Parsing doc commands without their files relies on this: paths are checked by the library, which
    says what is missing in one line (exit 2), not by click."""
    def walk(cmd):
        yield cmd
        for sub in getattr(cmd, "commands", {}).values():
            yield from walk(sub)

    for cmd in walk(main):
        for p in cmd.params:
            assert not (isinstance(p.type, click.Path) and p.type.exists), (cmd.name, p.name)


# --- the checker itself can fail --------------------------------------------------------------------------
def test_parser_catches_bad_command_lines():
    assert parse_command(["convert", "runs/x", "--int8", "--float32"]).name == "convert"
    assert parse_command(["data", "fetch", "ham10000", "--to", "data/ham"]).name == "fetch"
    for args in (["convert", "runs/x", "--no-such-option"],  # an option that does not exist
                 ["frobnicate"],  # a command that does not exist
                 ["data", "fetch", "--retries", "-1"],  # a value out of its range
                 ["predict", "model.tflite"],  # a required argument missing
                 ["data"]):  # a group without its command
        with pytest.raises(click.UsageError):
            parse_command(args)


def test_command_lines_are_read_as_a_shell_would():
    block = ("melkit train outside a block\n\n```bash\n$ bash setup.sh && .venv/bin/melkit web --port 0  # --bogus\n"
             "melkit card M.tflite \\\n    [--bench DIR ...] --chek; echo melkit\n```\n")
    commands = [args for line in code_lines(block) for args in melkit_commands(line)]
    assert commands == [["web", "--port", "0"], ["card", "M.tflite", "--bench", "DIR", "--chek"]]
    parse_command(commands[0])
    with pytest.raises(click.UsageError, match="chek"):
        parse_command(commands[1])


def test_link_checks_can_fail(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A title: `x`\n\n[ok](page.md#a-title-x) [gone](nowhere.md) [web](https://x.org/a.md)\n"
                    "```\n[in code](not-a-link.md)\n```\n")
    assert relative_links(page) == ["page.md", "nowhere.md"]
    assert heading_anchors(page) == {"a-title-x"}
