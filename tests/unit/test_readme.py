"""The README and its manuals (``docs/*.md``) say only what is true, checked against the code.

In every document of ``DOCUMENTS``, in inline code and in fenced code blocks:

(a) ``README.md`` is at most ``README_LIMIT`` bytes: a front door, the details in the manuals;
(b) every repo path quoted exists (``<placeholder>`` parts match any name); a path under
    ``data/`` is made at run time, so it must match a path the code itself writes there
    (snapshot store, manifests, quarantine, warehouse), and the others of ``GENERATED`` must be
    made where their reason says;
(c) every asset key, asset check (``<asset>:<check>``), op, job, schedule, sensor, pool and
    table quoted is one of the default deployment's (``build_definitions({})``). A name of the
    shorthand deployment (``build_definitions({"FIN_SYMBOLS": "AAPL"})``) is accepted only
    where the text says so: in a paragraph or list item that says "shorthand", or in a table
    column whose header does;
(d) every ``make <target>`` quoted is a target of the Makefile;
(e) every ``fin-assets``, ``dagster``, ``dg`` and ``dagster-celery`` command quoted names a
    real subcommand: its console script, run in this process with the command's words and
    ``--help``, exits 0, and its help lists every option the command quotes;
(f) every Markdown link to a local file resolves, and its ``#anchor`` is a heading there;
and every ``FIN_*`` variable quoted is a setting of ``fin_assets/lib/settings.py`` (or one of
``OTHER_VARIABLES``, read where it says).

Each check is a function from text to a list of problems; the tests at the end plant a wrong
name in a small text for each, so each can fail.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
import shlex
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from fin_assets.definitions import build_definitions
from fin_assets.lib.assets.actions import EQUITIES_TABLES, has_corporate_actions
from fin_assets.lib.catalog import sources_in_force
from fin_assets.lib.settings import SETTINGS, Settings
from fin_assets.lib.sources import Source
from resources.endpoints import Feed
from resources.metrics.catalog import SPECS
from resources.providers import get_adapter, provider_names
from resources.providers.archives import (
    ARCHIVE_PROVIDERS,
    BinanceVision,
    MassiveFlatFiles,
    archive_format,
)
from resources.raw.archive import RECORD_SUFFIX, ArchiveFile, ArchiveKeeper
from resources.raw.manifest import BARS_DATASET, MANIFESTS_DIR
from resources.raw.snapshots import SnapshotStore
from resources.storage.parquet import COMPACTED_DIR, ParquetWarehouse
from resources.tables.core import CORE_BARS_TABLE
from resources.tables.daily import DAILY_BARS_TABLE, DAILY_RETURNS_TABLE

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_LIMIT = 15_000
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
DEFAULT, SHORTHAND = "default", "shorthand"
SHORTHAND_ENV = {"FIN_SYMBOLS": "AAPL"}
# Not in the repo but made at run time, each where its reason says (checked below).
GENERATED = {".dagster_home": ("Makefile", "DAGSTER_HOME ?= $(CURDIR)/.dagster_home")}
# FIN_* variables that are not settings, and the file that reads each.
OTHER_VARIABLES = {
    "FIN_SIMULATOR_URL": "fin_assets/defs/crypto/defs.yaml",  # the declared sources' base_url
    "FIN_UPDATE_SNAPSHOT": "tests/unit/test_definitions_snapshot.py",
    "FIN_TEST_POSTGRES_URL": "tests/postgres/conftest.py",
}
COMMANDS = ("fin-assets", "dagster", "dg", "dagster-celery")
FILE_SUFFIXES = ("py", "md", "yaml", "yml", "toml", "json", "lock", "sh", "service", "timer")
SKIPPED_DIRS = {".git", ".venv", ".tools", "data", ".dagster_home", ".cache", "__pycache__"}

# What kind of name a quoted word is, by its form; the first that matches.
KINDS = (
    ("check", re.compile(r"^(raw|core)/[\w<>]+(/[\w<>]+)*:[\w<>]+$")),
    ("asset", re.compile(r"^(raw|core)/[\w<>]+(/[\w<>]+)*$")),
    ("op", re.compile(r"^(raw|core)__[\w<>]+$")),
    ("job", re.compile(r"^[\w<>]+_job$")),
    ("schedule", re.compile(r"^[\w<>]+_schedule$")),
    ("sensor", re.compile(r"^[\w<>]+_sensor$")),
    ("pool", re.compile(r"^(provider_[\w<>]+|[\w<>]+:[\w<>.-]+@[\w<>.:-]+)$")),
    ("table", re.compile(rf"^([\w<>]+__)?(core_[a-z_]+|{MANIFESTS_DIR})$")),
)
PLACEHOLDER = re.compile(r"<[^<>\s]+>")
WORD_SPLIT = re.compile(r"[\s'\"`,=(){}\[\]]+")
VARIABLE = re.compile(r"^FIN_[A-Z0-9_]*\*?$")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```\s*(\S*)")
METRIC = re.compile(r"^fin_assets_[a-z0-9_]+$")
# Runs a console script with a subcommand path and --help: its exit code and output.
Helper = Callable[[str, tuple[str, ...]], tuple[int, str]]


# -- reading Markdown ------------------------------------------------------------------------
@dataclass(frozen=True)
class Snippet:
    """Quoted text: an inline code span, or one line of a fenced code block."""

    text: str
    line: int
    block: bool  # a line of a fenced block
    lang: str  # the block's language ("" for inline code)
    deployments: frozenset[str]  # whose names it may quote


def _paragraphs(lines: list[str]) -> dict[int, int]:
    """Line index -> index of the first line of its paragraph or list item."""
    starts: dict[int, int] = {}
    start = 0
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or re.match(r"^([-*]|\d+\.) ", stripped) or stripped.startswith("#"):
            start = i
        starts[i] = start
    return starts


def snippets(text: str) -> list[Snippet]:
    """Every code span and code-block line of a Markdown text, with whose names it may quote."""
    lines = text.splitlines()
    paragraph = _paragraphs(lines)
    said: dict[int, bool] = {}  # paragraph start -> does the paragraph say "shorthand"
    for i, start in paragraph.items():
        said[start] = said.get(start, False) or SHORTHAND in lines[i].lower()
    found: list[Snippet] = []
    fence: str | None = None
    header: list[str] = []
    for i, line in enumerate(lines, start=1):
        opening = FENCE.match(line)
        if opening:
            fence = None if fence is not None else opening.group(1)
            continue
        if fence is not None:
            scope = {DEFAULT, SHORTHAND} if SHORTHAND in line.lower() else {DEFAULT}
            found.append(Snippet(line, i, True, fence, frozenset(scope)))
            continue
        if not line.lstrip().startswith("|"):
            header = []
            scope = {DEFAULT, SHORTHAND} if said[paragraph[i - 1]] else {DEFAULT}
            for span in re.findall(r"`([^`]+)`", line):
                found.append(Snippet(span, i, False, "", frozenset(scope)))
            continue
        cells = line.strip().strip("|").split("|")
        if not header:
            header = cells
            continue
        for column, cell in enumerate(cells):
            title = header[column].lower() if column < len(header) else ""
            scope = {SHORTHAND} if SHORTHAND in title else {DEFAULT}
            for span in re.findall(r"`([^`]+)`", cell):
                found.append(Snippet(span, i, False, "", frozenset(scope)))
    return found


def unbalanced_backticks(text: str) -> list[str]:
    """Lines outside code blocks with an odd number of backticks: a code span that runs over a
    line end, which the checks below would not see whole."""
    problems, fence = [], False
    for i, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fence = not fence
        elif not fence and line.count("`") % 2:
            problems.append(f"line {i}: a code span runs over the line end")
    return problems


def words(text: str) -> list[str]:
    """The words of quoted text, without the punctuation that may follow one."""
    return [w.rstrip(".;:") for w in WORD_SPLIT.split(text) if w.rstrip(".;:")]


def pattern(name: str, *, wildcard: str = ".+?") -> re.Pattern[str]:
    """A quoted name as a regular expression: each ``<placeholder>`` stands for any name."""
    parts = PLACEHOLDER.split(name)
    return re.compile(wildcard.join(re.escape(part) for part in parts))


# -- (c) names -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Deployment:
    """The names a deployment has, by kind."""

    names: dict[str, set[str]]
    data_paths: set[str] = field(default_factory=set)  # paths the code writes under data/


def deployment(env: dict[str, str]) -> Deployment:
    defs = build_definitions(env)
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    nodes = [node for job in repo.get_all_jobs() for node in job.graph.node_defs]
    sources = sources_in_force(env)
    bases = (CORE_BARS_TABLE, DAILY_BARS_TABLE, DAILY_RETURNS_TABLE, MANIFESTS_DIR)
    return Deployment(
        {
            "asset": {key.to_user_string() for key in graph.get_all_asset_keys()},
            "check": {key.to_user_string() for key in graph.asset_check_keys},
            "op": {node.name for node in nodes},
            "job": {job.name for job in repo.get_all_jobs()},
            "schedule": {schedule.name for schedule in repo.schedule_defs},
            "sensor": {sensor.name for sensor in repo.sensor_defs},
            "pool": {pool for node in nodes if (pool := getattr(node, "pool", None))},
            "table": {source.table(base) for source in sources for base in bases}
            | {
                source.table(base)
                for source in sources
                if has_corporate_actions(source)
                for base in EQUITIES_TABLES
            },
        },
        data_paths(sources, env),
    )


def data_paths(sources: list[Source], env: dict[str, str]) -> set[str]:
    """Paths the code writes under the data directory for these sources, relative to the repo:
    a snapshot and a quarantined response per provider and symbol, a manifest per source, and an
    hourly and a daily partition of every table."""
    settings = Settings.from_env(env)
    data = settings.data_dir.relative_to(ROOT).as_posix()
    warehouse = Path(settings.warehouse_url).relative_to(settings.data_dir).as_posix()
    start = datetime(2026, 1, 5, tzinfo=UTC)
    end = start + timedelta(hours=1)
    paths: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = SnapshotStore(root)
        wh = ParquetWarehouse(root / warehouse)
        symbols = {symbol for source in sources for symbol in source.symbols}
        for provider, symbol in itertools.product(provider_names(), sorted(symbols)):
            # Every part a feed's directory can have: a port, a path, a credential.
            by_plan = get_adapter(provider).answers_depend_on_credential
            feed = Feed(provider, "api.example.com:8443/v2", "0123456789ab" if by_plan else "")
            page: dict[str, Any] = {"dataset": BARS_DATASET, "body": b"[]", "meta": {}}
            page.update(feed=feed, symbol=symbol, start=start, end=end)
            ref = store.write(**page)
            quarantined = store.quarantine_body(**page, reason="")
            written = [root / ref.path, quarantined]
            paths.update(f"{data}/{p.relative_to(root).as_posix()}" for p in written)
        frame = pl.DataFrame({"symbol": ["AAPL"]})
        for source in sources:
            manifest = store.write_manifest(
                asset=source.table(MANIFESTS_DIR), partition_key="2026-01-05-00:00", manifest={}
            )
            paths.add(f"{data}/{manifest.relative_to(root).as_posix()}")
            for base in (CORE_BARS_TABLE, DAILY_BARS_TABLE, DAILY_RETURNS_TABLE):
                for key in ("2026-01-05-00:00", "2026-01-05"):
                    written_to = Path(wh.replace_partition(source.table(base), key, frame).location)
                    paths.add(f"{data}/{written_to.relative_to(root).as_posix()}")
            wh.compact(source.table(CORE_BARS_TABLE), ["2026-01-05-00:00"])  # as core/bars does
        for provider in ARCHIVE_PROVIDERS:  # a bulk archive's kept file, record and snapshot
            archive = archive_format(provider)
            keeper = ArchiveKeeper(store, archive)
            day = start.date()
            key = (
                BinanceVision.daily_key("BTCUSDT", day)
                if isinstance(archive, BinanceVision)
                else MassiveFlatFiles().key(day)
            )
            kept = keeper.path(ArchiveFile(key, start, end, ("BTCUSDT",)))
            ref = store.write(
                feed=archive.feed,
                dataset=archive.dataset,
                symbol="BTCUSDT",
                start=start,
                end=end,
                body=b"",
                meta={},
                suffix=".csv",
            )
            for path in (kept, kept.with_name(kept.name + RECORD_SUFFIX), root / ref.path):
                paths.add(f"{data}/{path.relative_to(root).as_posix()}")
        paths.update(
            f"{data}/{p.relative_to(root).as_posix()}"
            for p in (root / warehouse).rglob("*.parquet")
            if COMPACTED_DIR in p.parts
        )
    return paths


def name_problems(text: str, deployments: dict[str, Deployment]) -> list[str]:
    """(c): every name quoted is one of a deployment's the text may quote there."""
    problems = []
    for snippet in snippets(text):
        for word in words(snippet.text):
            kind = next((k for k, form in KINDS if form.match(word)), None)
            if kind is None:
                continue
            regex = pattern(word)
            where = [
                label
                for label in sorted(snippet.deployments)
                if any(regex.fullmatch(n) for n in deployments[label].names[kind])
            ]
            if not where:
                elsewhere = [
                    label
                    for label in sorted(set(deployments) - snippet.deployments)
                    if any(regex.fullmatch(n) for n in deployments[label].names[kind])
                ]
                hint = f" (a {elsewhere[0]} name: say so where it is quoted)" if elsewhere else ""
                problems.append(
                    f"line {snippet.line}: {kind} {word!r} is not in the "
                    f"{' or '.join(sorted(snippet.deployments))} deployment{hint}"
                )
    return problems


# -- (b) paths -------------------------------------------------------------------------------
def top_level() -> set[str]:
    return {p.name for p in ROOT.iterdir() if not p.name.startswith(".")} | {"data", *GENERATED}


def repo_file_names() -> set[str]:
    names = set()
    stack = [ROOT]
    while stack:
        for entry in stack.pop().iterdir():
            if entry.is_dir():
                if entry.name not in SKIPPED_DIRS:
                    stack.append(entry)
            else:
                names.add(entry.name)
    return names


def path_pattern(path: str) -> re.Pattern[str]:
    """A quoted path as a regular expression over relative paths: ``<placeholder>`` and ``*``
    stand for any part of one name, ``...`` for anything, a trailing ``/`` for what is in it."""
    body = path.rstrip("/")
    regex = ""
    for piece in re.split(r"(<[^<>\s]+>|\.\.\.|\*)", body):
        if piece == "...":
            regex += ".*"
        elif piece == "*" or PLACEHOLDER.fullmatch(piece):
            regex += "[^/]+?"
        else:
            regex += re.escape(piece)
    return re.compile(regex + ("(/.*)?" if path.endswith("/") or body == "data" else ""))


def path_problems(
    text: str, deployments: dict[str, Deployment], file_names: set[str] | None = None
) -> list[str]:
    """(b): every repo path quoted exists, or is one the code makes at run time."""
    problems = []
    roots = top_level()
    file_names = repo_file_names() if file_names is None else file_names
    bare = re.compile(rf"^\w[\w.-]*\.({'|'.join(FILE_SUFFIXES)})$")
    for snippet in snippets(text):
        for word in words(snippet.text):
            if "://" in word or word.startswith(("$", "~")):
                continue
            first = word.split("/", 1)[0]
            if "/" not in word:
                if bare.match(word) and word not in file_names:
                    problems.append(f"line {snippet.line}: no file named {word!r} in the repo")
                continue
            if first not in roots:
                continue
            if first == "data":
                made = set().union(*(deployments[d].data_paths for d in snippet.deployments))
                if not any(path_pattern(word).fullmatch(p) for p in made):
                    problems.append(
                        f"line {snippet.line}: {word!r} is not a path the code writes under data/"
                    )
            elif first in GENERATED:
                where, made_by = GENERATED[first]
                if made_by not in (ROOT / where).read_text():
                    problems.append(f"line {snippet.line}: {where} no longer makes {first!r}")
            else:
                glob = PLACEHOLDER.sub("*", word.split("...")[0].rstrip("/")) or "."
                if not any(ROOT.glob(glob)):
                    problems.append(f"line {snippet.line}: {word!r} does not exist")
    return problems


# -- (d) make targets, (e) commands ----------------------------------------------------------
def make_targets() -> set[str]:
    targets: set[str] = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_ -]+):(?!=)", line)
        if match:
            targets.update(match.group(1).split())
    return targets


def make_problems(text: str, targets: set[str]) -> list[str]:
    """(d): every ``make <target>`` quoted is a Makefile target."""
    return [
        f"line {snippet.line}: no make target {target!r}"
        for snippet in snippets(text)
        for target in re.findall(r"(?<![\w-])make\s+([A-Za-z][\w-]*)", snippet.text)
        if target not in targets
    ]


@dataclass(frozen=True)
class Command:
    line: int
    tool: str
    words: tuple[str, ...]  # the words before the first option: the subcommand path
    options: tuple[str, ...]


def commands(text: str) -> list[Command]:
    """The commands quoted: inline code and lines of shell blocks, joined across ``\\``."""
    found = []
    lines: list[tuple[int, str]] = []
    for snippet in snippets(text):
        if snippet.block and snippet.lang not in ("bash", "sh", "shell", "console"):
            continue
        if lines and lines[-1][1].endswith("\\"):
            lines[-1] = (lines[-1][0], lines[-1][1][:-1] + " " + snippet.text)
        else:
            lines.append((snippet.line, snippet.text))
    for number, line in lines:
        for part in re.split(r"&&|;|\|", line.split(" #", 1)[0]):
            try:
                argv = shlex.split(part)
            except ValueError:
                argv = part.split()
            while argv and (re.match(r"^\w+=", argv[0]) or argv[0] in ("uv", "run")):
                argv.pop(0)  # VAR=value, uv run
            # A console script by name, or by path in a bin/ directory (.venv/bin/fin-assets).
            tool = re.sub(r"^(.*/)?bin/", "", argv[0]) if argv else ""
            if tool not in COMMANDS:
                continue
            args = argv[1 : argv.index("--")] if "--" in argv else argv[1:]
            first_option = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
            options = tuple(a.split("=", 1)[0] for a in args if re.match(r"^--?[A-Za-z]", a))
            found.append(Command(number, tool, tuple(args[:first_option]), options))
    return found


def run_console_script(tool: str, args: list[str]) -> tuple[int, str]:
    """Run a console script of this environment in this process; its exit code and output."""
    (entry,) = [e for e in entry_points(group="console_scripts") if e.name == tool]
    out = io.StringIO()
    argv = sys.argv
    sys.argv = [tool, *args]
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(out),
        ):
            warnings.simplefilter("ignore")
            entry.load()()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, out.getvalue()


def command_problems(text: str, helper: Helper) -> list[str]:
    """(e): each command's subcommand exists (``--help`` exits 0) and takes its options."""
    problems = []
    for command in commands(text):
        if not command.words and command.tool != "fin-assets" and not command.options:
            problems.append(f"line {command.line}: {command.tool} without a subcommand")
            continue
        code, output = helper(command.tool, command.words)
        quoted = " ".join((command.tool, *command.words))
        if code != 0:
            problems.append(f"line {command.line}: `{quoted} --help` exits {code}")
            continue
        for option in command.options:
            if option not in ("-h", "--help") and not re.search(
                rf"(?<![\w-]){re.escape(option)}(?![\w-])", output
            ):
                problems.append(f"line {command.line}: `{quoted}` has no option {option}")
    return problems


# -- (f) links, variables, size --------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {
        slug(line.lstrip("#"))
        for line in path.read_text().splitlines()
        if re.match(r"^#{1,6} ", line)
    }


def link_problems(text: str, where: Path) -> list[str]:
    """(f): every link to a local file resolves, and its anchor is a heading of that file."""
    problems = []
    for i, line in enumerate(text.splitlines(), start=1):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:
            path_text, _, anchor = target.partition("#")
            path = (where.parent / path_text).resolve() if path_text else where
            if not path.exists():
                problems.append(f"line {i}: link to {target!r}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                problems.append(f"line {i}: link to {target!r}: no such heading")
    return problems


def variable_problems(text: str) -> list[str]:
    """Every FIN_* variable quoted is a setting, or one of OTHER_VARIABLES (a prefix with *);
    every metric name quoted is one the exporter serves (``resources/metrics/catalog.py``)."""
    known = {s.name for s in SETTINGS} | set(OTHER_VARIABLES)
    problems = []
    for snippet in snippets(text):
        for word in words(snippet.text):
            if METRIC.match(word) and word not in SPECS:
                problems.append(f"line {snippet.line}: no metric {word}")
            if not VARIABLE.match(word):
                continue
            ok = (
                any(name.startswith(word[:-1]) for name in known)
                if word.endswith("*")
                else word in known
            )
            if not ok:
                problems.append(f"line {snippet.line}: {word} is not a setting")
    return problems


def size_problems(data: bytes) -> list[str]:
    """(a): the README is a front door."""
    if len(data) > README_LIMIT:
        return [f"README.md is {len(data):,} bytes, over {README_LIMIT:,}: move detail to docs/"]
    return []


# -- the documents ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deployments() -> Iterator[dict[str, Deployment]]:
    # The declared sources' base URL is {{ env('FIN_SIMULATOR_URL', ...) }}: its default here.
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("FIN_SIMULATOR_URL", raising=False)
        yield {DEFAULT: deployment({}), SHORTHAND: deployment(SHORTHAND_ENV)}


@pytest.fixture(scope="module")
def helper() -> Helper:
    results: dict[tuple[str, tuple[str, ...]], tuple[int, str]] = {}

    def run(tool: str, path: tuple[str, ...]) -> tuple[int, str]:
        if (tool, path) not in results:
            results[tool, path] = run_console_script(tool, [*path, "--help"])
        return results[tool, path]

    return run


def test_the_readme_is_a_front_door() -> None:
    assert size_problems(README.read_bytes()) == []


def test_the_other_variables_are_read_where_they_say() -> None:
    for name, where in OTHER_VARIABLES.items():
        assert name in (ROOT / where).read_text(), f"{where} no longer reads {name}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_what_a_document_quotes_is_true(
    document: Path,
    deployments: dict[str, Deployment],
    helper: Helper,
) -> None:
    text = document.read_text()
    problems = [
        *unbalanced_backticks(text),
        *path_problems(text, deployments),
        *name_problems(text, deployments),
        *make_problems(text, make_targets()),
        *command_problems(text, helper),
        *link_problems(text, document),
        *variable_problems(text),
    ]
    assert not problems, f"{document.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_every_manual_is_linked_from_the_readme() -> None:
    text = README.read_text()
    for manual in DOCUMENTS[1:]:
        assert f"({manual.relative_to(ROOT).as_posix()})" in text, manual.name


# -- each check can fail -----------------------------------------------------------------------
def test_a_wrong_or_misplaced_name_is_found(deployments: dict[str, Deployment]) -> None:
    def found(text: str) -> list[str]:
        return name_problems(text, deployments)

    assert found("Run `crypto__bars_hourly_job` on `raw/us_equities/bars`.") == []
    assert (
        found("`core/<source>/bars:ohlc_invariants`, pool `simulator:public@127.0.0.1:8765`") == []
    )
    for wrong in (
        "`raw/us_equities/barz`",
        "`core/crypto/bars:ohlc_invariant`",
        "`crypto__bars_daily_job`",
        "`us_equities__bars_hourly_schedul_schedule`",
        "`<source>__new_bar_sensor`",
        "pool `simulator:secret@127.0.0.1:8765`",
        "table `crypto__core_barz`",
        "op `raw__crypto__barz`",
    ):
        assert found(wrong), wrong
    # A shorthand name is refused unless the text says it is one.
    assert "a shorthand name" in found("Switch on `new_bars_sensor`.")[0]
    assert found("With the shorthand, switch on `new_bars_sensor`.") == []
    assert found("- the shorthand has:\n  `provider_simulator`\n\n`raw/bars`") == [
        "line 4: asset 'raw/bars' is not in the default deployment (a shorthand name: say so "
        "where it is quoted)"
    ]
    table = "| | default | shorthand |\n|---|---|---|\n| jobs | `{}` | `{}` |"
    assert found(table.format("crypto__daily_tables_job", "daily_tables_job")) == []
    assert len(found(table.format("daily_tables_job", "crypto__daily_tables_job"))) == 2


def test_a_missing_or_never_written_path_is_found(deployments: dict[str, Deployment]) -> None:
    def found(text: str) -> list[str]:
        return path_problems(text, deployments, file_names={"dagster.yaml"})

    fine = (
        "`fin_assets/lib/catalog.py`, `fin_assets/defs/<source>/defs.yaml`, `deploy/systemd/`, "
        "`data/warehouse/crypto__core_bars/*.parquet`, `data/manifests/<source>__raw_bars/`, "
        "`data/quarantine/raw/...`, `.dagster_home/`, `dagster.yaml`, `https://x.org/a/b`"
    )
    assert found(fine) == []
    assert (
        found("```text\ndata/raw/<provider>@<endpoint>/bars_1m/<SYMBOL>/<start>_<end>.json\n```")
        == []
    )
    for wrong in (
        "`fin_assets/lib/catalogue.py`",
        "`resources/providers/<name>.rs`",
        "`data/warehouse/crypto__core_barz/x.parquet`",
        "`data/manifests/raw_bars/`",  # the shorthand's, not said so
        "`data/raw/simulator@<endpoint>/bars_5m/`",
        "`data/raw/simulator/bars_1m/`",  # the layout before endpoints
        "`dagster.yml`",
    ):
        assert found(wrong), wrong
    assert found("With the shorthand: `data/manifests/raw_bars/`.") == []


def test_a_wrong_make_target_is_found() -> None:
    targets = make_targets()
    assert {"demo", "test", "test-fast", "ui", "simulator", "bench", "clean"} <= targets
    assert make_problems("`make demo` then `make test-fast`", targets) == []
    assert make_problems("```bash\nmake tests   # all of them\n```", targets) == [
        "line 2: no make target 'tests'"
    ]


def test_a_wrong_subcommand_or_option_is_found(
    helper: Helper,
) -> None:
    text = (
        "```bash\nexport DAGSTER_HOME=x\nFIN_X=1 uv run dagster asset materialize -m m \\\n"
        "  --select 'a,b' --partition-range 1...2   # a comment\n```\n"
        "`fin-assets backfill --submit` and `dg list defs`"
    )
    assert [(c.tool, c.words, c.options) for c in commands(text)] == [
        ("dagster", ("asset", "materialize"), ("-m", "--select", "--partition-range")),
        ("fin-assets", ("backfill",), ("--submit",)),
        ("dg", ("list", "defs"), ()),
    ]
    assert command_problems(text, helper) == []
    assert command_problems("`dagster asset materalize`", helper) == [
        "line 1: `dagster asset materalize --help` exits 2"
    ]
    assert command_problems("`fin-assets bakfill`", helper) == [
        "line 1: `fin-assets bakfill --help` exits 2"
    ]
    assert command_problems("`fin-assets backfill --resume`", helper) == [
        "line 1: `fin-assets backfill` has no option --resume"
    ]


def test_a_broken_link_or_anchor_is_found() -> None:
    where = ROOT / "docs" / "x.md"
    text = "[c](configuration.md#refused-at-load), [r](../README.md#layout), [w](https://x.org)"
    assert link_problems(text, where) == []
    assert link_problems("[c](configurations.md)", where) == [
        "line 1: link to 'configurations.md': no such file"
    ]
    assert link_problems("[c](configuration.md#refused)", where) == [
        "line 1: link to 'configuration.md#refused': no such heading"
    ]


def test_an_unknown_variable_an_open_code_span_and_a_long_readme_are_found() -> None:
    assert variable_problems("`FIN_QUOTA_*`, `FIN_EXECUTOR=celery`, `FIN_SIMULATOR_URL`") == []
    assert variable_problems("`FIN_QUOTA_LIMIT`") == ["line 1: FIN_QUOTA_LIMIT is not a setting"]
    assert variable_problems("`grep fin_assets_asset_lag_seconds`") == []
    assert variable_problems("`fin_assets_lag_seconds`") == [
        "line 1: no metric fin_assets_lag_seconds"
    ]
    assert unbalanced_backticks("a `b\nc` d")[0] == "line 1: a code span runs over the line end"
    assert size_problems(b"x" * README_LIMIT) == []
    assert size_problems(b"x" * (README_LIMIT + 1))
