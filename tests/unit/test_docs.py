"""The docs show only what exists: README.md and every docs/*.md page, read as Markdown.

- Every `sorctl ...` line in a fenced sh/bash/console block parses against the real CLI: the
  subcommand is resolved and its arguments parsed by click's own parser (`make_context`, which
  does not run the command), so a flag that does not exist, a bad value or a missing argument
  fails here.
- Every `make X` names a Makefile target; every script or repository path a command names
  exists, and a `bench/*.py` script accepts the flags given (its argparse `--help`, run).
- Every relative link and image points at a file that exists, and an `#anchor` at a heading
  of that page (GitHub's anchors).
- Every fenced python block compiles; those in docs/ run, in a scratch directory, unless the
  comment before the block says it needs a cluster and which integration test runs it.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from markdown_it import MarkdownIt
from markdown_it.token import Token

from sorctl.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"sh", "bash", "shell", "console"}
# The comment that marks a python block as needing a running cluster; it names the test that
# runs the block with one.
NEEDS_CLUSTER = re.compile(r"<!--\s*docs-test:\s*needs a cluster, run by (\S+)\s*-->")
# Shell words that only prefix the command they run.
PREFIXES = {"sudo", "time", "exec", "env", "nohup"}
PYTHONS = re.compile(r"^(\S*/)?python(3(\.\d+)?)?$")
OPERATORS = {"|", "||", "&&", ";", "&", "(", ")", ";;"}
REDIRECTS = {">", ">>", "<", "2>", "&>", ">&", "2>&1", "<<"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based, of the opening fence
    lang: str
    text: str
    note: str  # the HTML comment just before the block, if any

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


@functools.cache
def _tokens(page: Path) -> list[Token]:
    return _markdown().parse(page.read_text())


def _blocks(page: Path) -> list[Block]:
    out, note = [], ""
    for tok in _tokens(page):
        if tok.type == "html_block":
            note = tok.content
            continue
        if tok.type in ("fence", "code_block"):
            lang = tok.info.split()[0] if tok.info.strip() else ""
            line = (tok.map[0] + 1) if tok.map else 0
            out.append(Block(page, line, lang, tok.content, note))
        if tok.type not in ("html_block",):
            note = ""
    return out


ALL_BLOCKS = [b for page in PAGES for b in _blocks(page)]
# docs/cli.md's console blocks are usage lines (`sorctl up [OPTIONS]`), generated from the CLI
# and checked against it by test_cli_docs.py.
CLI_REFERENCE = ROOT / "docs" / "cli.md"
SHELL_BLOCKS = [b for b in ALL_BLOCKS if b.lang in SHELL_LANGS and b.page != CLI_REFERENCE]
PYTHON_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "python"]


# --- shell lines -------------------------------------------------------------------------


def _command_lines(block: Block) -> list[str]:
    """The shell lines of a block: continuations joined, comments dropped; for a console block
    only the lines after a `$ ` prompt."""
    lines, pending = [], ""
    for raw in block.text.splitlines():
        if block.lang == "console":
            if not raw.startswith("$ ") and not pending:
                continue
            raw = raw[2:] if raw.startswith("$ ") and not pending else raw
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = _strip_comment(pending + raw).strip()
        pending = ""
        if line:
            lines.append(line)
    return lines


def _strip_comment(line: str) -> str:
    """Drop a `# comment`: a # that starts a word outside quotes (as the shell reads it)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _substitutions(line: str) -> tuple[str, list[str]]:
    """Cut out every `$( ... )`: the line with a placeholder word, and the commands inside."""
    inner, out, i = [], [], 0
    while i < len(line):
        if line.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(line) and depth:
                depth += {"(": 1, ")": -1}.get(line[j], 0)
                j += 1
            inner.append(line[i + 2 : j - 1])
            out.append("SUBST")
            i = j
        else:
            out.append(line[i])
            i += 1
    return "".join(out), inner


def _simple_commands(line: str) -> list[list[str]]:
    """The simple commands of a line: split at pipes and lists, redirections and their
    targets, leading variable assignments and prefixes like sudo dropped."""
    line, inner = _substitutions(line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.commenters = ""
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    skip_next = False
    for word in lexer:
        if skip_next:
            skip_next = False
        elif word in OPERATORS:
            commands.append([])
        elif word in REDIRECTS:
            skip_next = True
        else:
            commands[-1].append(word)
    for words in commands:
        while words and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]) or words[0] in PREFIXES):
            words.pop(0)
    return [w for w in commands if w] + [c for text in inner for c in _simple_commands(text)]


def _all_commands() -> list[tuple[Block, list[str]]]:
    return [
        (b, words)
        for b in SHELL_BLOCKS
        for line in _command_lines(b)
        for words in _simple_commands(line)
    ]


# --- what the commands name --------------------------------------------------------------


class NotACommand(Exception):
    pass


def _parse_sorctl(args: list[str]) -> None:
    """Resolve the subcommand and parse its arguments with the CLI's own (click) parser,
    without running it: NotACommand with click's message when they do not parse."""
    # Duck-typed: typer >= 0.20 carries its own copy of click, whose classes are not click's.
    command: Any = typer.main.get_command(app)
    name, parent = "sorctl", None
    try:
        while hasattr(command, "resolve_command"):  # a group: sorctl, sorctl images
            ctx = typer.Context(command, info_name=name, parent=parent)
            if not args:
                raise NotACommand(f"`{ctx.command_path}` needs a command")
            name, command, args = command.resolve_command(ctx, args)
            parent = ctx
        command.make_context(name, list(args), parent=parent, resilient_parsing=False)
    except NotACommand:
        raise
    except Exception as exc:
        if type(exc).__name__ == "Exit":  # --help
            return
        if hasattr(exc, "format_message"):  # click's UsageError, BadParameter, NoSuchOption
            raise NotACommand(exc.format_message()) from exc
        raise


@functools.cache
def _make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:(?!=)", text, re.M))


@functools.cache
def _script_options(script: str) -> frozenset[str]:
    """The options a bench script's argparse accepts, from its --help."""
    proc = subprocess.run(
        [sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"{script} --help failed: {proc.stderr[-2000:]}"
    return frozenset(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", proc.stdout))


TOP_DIRS = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}
TOP_DIRS -= {"test-artefacts", "build", "dist"}


def _repo_paths(words: list[str]) -> list[str]:
    """Words that name a file of this repository (they start with one of its directories)."""
    out = []
    for word in words:
        path = word.split("=", 1)[-1] if word.startswith("-") else word
        first = path.removeprefix("./").split("/", 1)[0]
        if "/" in path and first in TOP_DIRS | {".ci"} and not path.startswith("/"):
            out.append(path)
    return out


def _check(words: list[str]) -> str | None:
    """None when the command names only what exists; else what is wrong."""
    program, args = words[0], words[1:]
    missing = [p for p in _repo_paths(words) if not (ROOT / p).exists()]
    if missing:
        return f"no such file: {', '.join(missing)}"
    if program == "sorctl" or program.endswith("/sorctl"):
        try:
            _parse_sorctl(args)
        except NotACommand as exc:
            return str(exc)
        return None
    if program == "make":
        targets = [a for a in args if not a.startswith("-") and "=" not in a]
        unknown = [t for t in targets if t not in _make_targets()]
        return f"no Makefile target {unknown}" if unknown else None
    if PYTHONS.match(program):
        if not args or args[0] in ("-m", "-c"):
            return None
        program, args = args[0], args[1:]
    if program.endswith(".py") and program.removeprefix("./").startswith("bench/"):
        flags = [a.split("=", 1)[0] for a in args if a.startswith("-")]
        unknown = [f for f in flags if f not in _script_options(program)]
        return f"{program} does not accept {unknown}" if unknown else None
    if "/" in program and not program.startswith("/") and not (ROOT / program).exists():
        return f"no such script: {program}"
    return None


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=str)
def test_every_command_in_a_shell_block_exists(block):
    problems = [
        f"{' '.join(words)}: {problem}"
        for line in _command_lines(block)
        for words in _simple_commands(line)
        if (problem := _check(words))
    ]
    assert not problems, f"{block}:\n  " + "\n  ".join(problems)


def test_the_shell_blocks_show_commands():
    """The extraction finds the commands (a parser that saw nothing would pass everything)."""
    programs = {words[0] for _, words in _all_commands()}
    assert {"sorctl", "make", "docker"} <= programs
    subcommands = {words[1] for _, words in _all_commands() if words[0] == "sorctl"}
    assert {
        "up",
        "solve",
        "status",
        "logs",
        "scale",
        "down",
        "images",
        "dashboard",
        "gen",
    } <= subcommands


@pytest.mark.parametrize(
    "line",
    [
        "sorctl up --nodes 4 --no-such-flag",
        "sorctl up --nodes four",
        "sorctl gen poisson2d -o x.npz",  # its --size is missing
        "sorctl frobnicate",
        "sorctl images",
        "make no-such-target",
        "python bench/bench_kernels.py --no-such-flag",
        "scripts/no-such-script.sh up",
        "sorctl solve examples/no-such-file.npz",
        "bash .ci/no-such-file",
        'X="$(sorctl status --bogus)"',
    ],
)
def test_the_check_catches_what_does_not_exist(line):
    assert any(_check(words) for words in _simple_commands(line)), line


def test_no_command_hides_in_an_unchecked_block():
    """A command line in an indented block or a fence of another language would go unchecked."""
    hidden = [
        f"{b}: {line.strip()}"
        for b in ALL_BLOCKS
        if b.lang not in SHELL_LANGS | {"python"}
        for line in b.text.splitlines()
        if re.match(r"\s*(\$ )?(sorctl|make|python3?|docker|docker-compose) ", line)
    ]
    assert not hidden, "use a ```sh fence:\n  " + "\n  ".join(hidden)


def test_ci_runs_the_test_command_readme_gives():
    readme = [
        words
        for b in SHELL_BLOCKS
        if b.page.name == "README.md"
        for line in _command_lines(b)
        for words in _simple_commands(line)
    ]
    assert ["make", "test"] in readme
    ci = [_strip_comment(line).strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert [line for line in ci if line][-1] == "make test"


# --- links -------------------------------------------------------------------------------


def _slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation but - and _ dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@functools.cache
def _anchors(page: Path) -> frozenset[str]:
    tokens, seen, out = _tokens(page), {}, set()
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            inline = tokens[i + 1]
            text = "".join(
                c.content for c in inline.children or [] if c.type in ("text", "code_inline")
            )
            slug = _slug(text)
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return frozenset(out)


def _links(page: Path) -> list[str]:
    out = []
    for tok in _tokens(page):
        for child in tok.children or []:
            if child.type == "link_open":
                out.append(str(child.attrs["href"]))
            elif child.type == "image":
                out.append(str(child.attrs["src"]))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page):
    broken = []
    for href in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", href):  # https:, mailto:
            continue
        target, _, anchor = href.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{href}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{href}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}:\n  " + "\n  ".join(broken)


def test_readme_links_every_docs_page():
    linked = {(ROOT / h.partition("#")[0]).resolve() for h in _links(ROOT / "README.md")}
    unlinked = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not unlinked, f"README.md does not link {unlinked}"


def test_the_slug_is_githubs():
    assert (
        _slug("Or through relays: `--relay --relay-host`")
        == "or-through-relays---relay---relay-host"
    )
    assert _slug("dispy's common failures") == "dispys-common-failures"
    assert _slug("`sorctl images build`") == "sorctl-images-build"


# --- python blocks -----------------------------------------------------------------------


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=str)
def test_every_python_block_compiles(block):
    compile(block.text, str(block), "exec")


def test_a_block_that_needs_a_cluster_names_the_test_that_runs_it():
    for block in PYTHON_BLOCKS:
        if (mark := NEEDS_CLUSTER.search(block.note)) is None:
            continue
        runner = ROOT / mark[1]
        assert runner.is_file(), f"{block}: {mark[1]} does not exist"
        assert block.page.name in runner.read_text(), (
            f"{block}: {mark[1]} never reads {block.page.name}"
        )


DOCS_RUNNABLE = [
    b for b in PYTHON_BLOCKS if b.page.parent.name == "docs" and not NEEDS_CLUSTER.search(b.note)
]


@pytest.mark.parametrize("block", DOCS_RUNNABLE, ids=str)
def test_a_docs_python_block_without_a_cluster_runs(block, tmp_path):
    env = {**os.environ, "SORCTL_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-c", block.text],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{block}:\n{proc.stderr[-3000:]}"
