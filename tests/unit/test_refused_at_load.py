"""Every bad input is refused when the definitions load, before any request or write, in one
line naming the variable, or the file, line and field, and what to do instead; and what the
load refuses in a source file, the schema `dg check yaml` validates with refuses too.

Each of these once loaded and failed later: FIN_SYMBOLS="" fetched the five default stocks,
``quota: {requests: .inf}`` died in the step with a ZeroDivisionError, a 44-character source
name failed every daily run, a file:// base URL was retried five times, a file or a malformed
URL as the data directory or warehouse failed at the first write, XASX passed `dg check yaml`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fin_assets.definitions import build_definitions
from fin_assets.lib.components import schema_problems
from resources.errors import InvalidInputError
from resources.simulator.server import MarketSimulator

LONG_NAME = "a" * 44
SOURCE = """type: fin_assets.lib.components.MarketDataSource
attributes:
  name: {name}
  provider: simulator
  symbols: [AAPL]
  base_url: {base_url}
{extra}"""

# (variables, the message's parts); "{tmp}" is the test's directory, holding a file "a_file".
BAD_VARIABLES: dict[str, tuple[dict[str, str], list[str]]] = {
    "empty symbols": (
        {"FIN_SYMBOLS": ""},
        ["FIN_SYMBOLS is set but empty: name the symbols (e.g. FIN_SYMBOLS=AAPL,MSFT)"],
    ),
    "data dir is a file": (
        {"FIN_DATA_DIR": "{tmp}/a_file"},
        [
            "FIN_DATA_DIR='{tmp}/a_file' cannot hold the snapshots and tables: {tmp}/a_file is a "
            "file, not a directory; point FIN_DATA_DIR at a directory this user can write"
        ],
    ),
    "data dir inside a file": (
        {"FIN_DATA_DIR": "{tmp}/a_file/data"},
        ["FIN_DATA_DIR='{tmp}/a_file/data'", "{tmp}/a_file is a file, not a directory"],
    ),
    "warehouse port": (
        {"FIN_WAREHOUSE_URL": "postgresql://fin:hunter2@db.internal:5432x/market"},
        [
            "FIN_WAREHOUSE_URL='postgresql://fin@db.internal:5432x/market': not a PostgreSQL URL "
            "libpq accepts (port '5432x' is not a number from 1 to 65535); use an absolute "
            "directory (the Parquet lake) or postgresql://user@host:5432/db"
        ],
    ),
    "warehouse scheme typo": (
        {"FIN_WAREHOUSE_URL": "postgresql//db.internal/market"},
        ["FIN_WAREHOUSE_URL='postgresql//db.internal/market': a relative path"],
    ),
    "warehouse scheme": (
        {"FIN_WAREHOUSE_URL": "mysql://db.internal/market"},
        ["FIN_WAREHOUSE_URL='mysql://db.internal/market': unsupported warehouse URL scheme"],
    ),
    "warehouse file url with a host": (
        {"FIN_WAREHOUSE_URL": "file://lake/market"},
        ["FIN_WAREHOUSE_URL='file://lake/market': file:// takes a path, not the host 'lake'"],
    ),
    "warehouse is a file": (
        {"FIN_WAREHOUSE_URL": "{tmp}/a_file"},
        ["the Parquet lake cannot be written there: {tmp}/a_file is a file, not a directory"],
    ),
    "file base url": (
        {"FIN_API_BASE_URL": "file:///srv/bars"},
        ["FIN_API_BASE_URL: 'file:///srv/bars' is not an http(s) URL with a host"],
    ),
    # The declared sources' base_url is {{ env('FIN_SIMULATOR_URL', ...) }}.
    "file base url through a template": (
        {"FIN_SIMULATOR_URL": "file:///srv/bars"},
        [
            "crypto/defs.yaml:",
            "attributes.base_url: 'file:///srv/bars' is not an http(s) URL with a host: "
            "expected e.g. https://api.binance.com or http://127.0.0.1:8765 (the value of "
            "{{{{ env('FIN_SIMULATOR_URL', 'http://127.0.0.1:8765') }}}})",
        ],
    ),
    "calendar crossing midnight": (
        {"FIN_SYMBOLS": "AAPL", "FIN_CALENDAR": "XASX"},
        ["FIN_CALENDAR: calendar 'XASX' is not supported: its sessions cross midnight UTC"],
    ),
}

# (a source file's extra lines, the field refused, the message's parts). Line 7 is the first
# extra line.
BAD_FILES: dict[str, tuple[str, str, list[str]]] = {
    "infinite quota": (
        "  quota: {requests: .inf, window_seconds: 1}",
        "quota",
        ["bad/defs.yaml:7: attributes.quota.requests: inf is not a positive, finite number"],
    ),
    "nan quota": (
        "  quota:\n    requests: 5\n    window_seconds: .nan",
        "quota",
        ["bad/defs.yaml:9: attributes.quota.window_seconds: nan is not a positive, finite"],
    ),
    "quota as a string": (
        "  quota: 5/min",
        "quota",
        [
            "bad/defs.yaml:7: attributes.quota: '5/min' is neither 'learn', 'documented' nor a "
            "{{ template }}; expected: The provider's quota: {requests: N, window_seconds: S"
        ],
    ),
    "quota requests as a string": (
        "  quota: {requests: 5/min, window_seconds: 60}",
        "quota",
        ["attributes.quota.requests: '5/min' is text", "expected: Requests (or weight)"],
    ),
    "infinite freshness": (
        "  freshness: {fail_minutes: .inf}",
        "freshness",
        ["bad/defs.yaml:7: attributes.freshness.fail_minutes: inf is not a positive, finite"],
    ),
    "calendar crossing midnight": (
        "  calendar: XASX",
        "calendar",
        [
            "bad/defs.yaml:7: attributes.calendar: calendar 'XASX' is not supported: its "
            "sessions cross midnight UTC",
            "daily partitions are UTC days; use '24/7', XNYS",
        ],
    ),
    "calendar without holidays to the horizon": (
        "  calendar: XBOM",
        "calendar",
        ["attributes.calendar: calendar 'XBOM' is not supported", "only recorded to the year"],
    ),
    "unknown calendar": (
        "  calendar: XNYZ",
        "calendar",
        ["attributes.calendar: unknown calendar 'XNYZ': use '24/7', XNYS"],
    ),
    "name too long for its tables": (
        "",
        "name",
        [
            f"defs.yaml:3: attributes.name: source name '{LONG_NAME}' is 44 characters: at "
            f"most 43, because its longest table, {LONG_NAME}__core_daily_returns, must fit the "
            "63 characters of a PostgreSQL identifier; choose a shorter name"
        ],
    ),
    "file base url": (
        "",
        "base_url",
        ["bad/defs.yaml:6: attributes.base_url: 'file:///srv/bars' is not an http(s) URL"],
    ),
    "archive use": (
        "  archive: {use: sometimes}",
        "archive",
        ["bad/defs.yaml:7: attributes.archive.use: ", "sometimes"],
    ),
    "archive key given as the key": (
        "  archive: {access_key_env: AKIA1234/secret+x, secret_key_env: S}",
        "archive",
        ["bad/defs.yaml:7: attributes.archive.access_key_env: "],
    ),
}


@pytest.fixture
def tmp(tmp_path: Path, sim: MarketSimulator) -> Path:
    """The test's directory, with one file in it; the simulator has seen no request yet."""
    (tmp_path / "a_file").write_text("not a directory\n")
    return tmp_path


def base_env(tmp: Path, sim: MarketSimulator) -> dict[str, str]:
    return {
        "DAGSTER_HOME": str(tmp / "home"),
        "FIN_DATA_DIR": str(tmp / "data"),
        "FIN_SIMULATOR_URL": sim.url,
    }


def write_source(directory: Path, folder: str, *, name: str, base_url: str, extra: str) -> None:
    (directory / folder).mkdir(parents=True)
    text = SOURCE.format(name=name, base_url=base_url, extra=extra + "\n" if extra else "")
    (directory / folder / "defs.yaml").write_text(text)


def refused(
    env: dict[str, str], tmp: Path, sim: MarketSimulator, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The load's refusal, after checking that it fetched and wrote nothing."""
    for name, value in env.items():  # templates ({{ env(...) }}) read the process's own
        monkeypatch.setenv(name, value)
    made = {p for p in tmp.rglob("*")}
    with pytest.raises(InvalidInputError) as error:
        build_definitions(env)
    message = str(error.value)
    assert "\n" not in message, message  # the command line prints it as one line
    assert sim.request_log() == []
    assert {p for p in tmp.rglob("*")} == made, "the refused load wrote something"
    return message


@pytest.mark.parametrize("case", sorted(BAD_VARIABLES))
def test_a_bad_variable_is_refused_at_load(
    case: str, tmp: Path, sim: MarketSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables, parts = BAD_VARIABLES[case]
    env = {**base_env(tmp, sim), **{k: v.format(tmp=tmp) for k, v in variables.items()}}
    message = refused(env, tmp, sim, monkeypatch)
    for part in parts:
        assert part.format(tmp=tmp) in message, message
    assert "hunter2" not in message


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_source_file_is_refused_at_load_and_by_its_schema(
    case: str, tmp: Path, sim: MarketSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra, field, parts = BAD_FILES[case]
    name = LONG_NAME if field == "name" else "bad"
    base_url = "file:///srv/bars" if field == "base_url" else sim.url
    write_source(tmp / "sources", "bad", name=name, base_url=base_url, extra=extra)
    env = {**base_env(tmp, sim), "FIN_SOURCES_DIR": str(tmp / "sources")}
    message = refused(env, tmp, sim, monkeypatch)
    assert message.startswith(f"source file {tmp}/sources/bad/defs.yaml:"), message
    for part in parts:
        assert part in message, message
    # `dg check yaml` refuses the same file, at the same field (its subprocess test is in
    # tests/integration/test_sources.py).
    text = (tmp / "sources" / "bad" / "defs.yaml").read_text()
    problems = schema_problems(yaml.safe_load(text)["attributes"])
    assert problems and problems[0][0][:1] == [field], problems


@pytest.mark.parametrize(
    ("provider", "archive", "parts"),
    [
        (
            "simulator",
            "{use: auto}",
            ["attributes.archive: ", "provider simulator has no bulk archive"],
        ),
        (
            "polygon",
            "{access_key_env: S3_KEY_NOT_SET_ANYWHERE, secret_key_env: S3_SECRET_NOT_SET}",
            ["archive: variable S3_KEY_NOT_SET_ANYWHERE is not set"],
        ),
        (
            "polygon",
            "{access_key_env: S3_KEY_NOT_SET_ANYWHERE}",
            ["attributes.archive: ", "access_key_env and secret_key_env go together"],
        ),
    ],
)
def test_an_archive_the_provider_cannot_have_or_without_its_keys_is_refused_at_load(
    provider: str,
    archive: str,
    parts: list[str],
    tmp: Path,
    sim: MarketSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra = f"  archive: {archive}" + (
        "\n  api_key_env: BAD_POLYGON_KEY" if provider == "polygon" else ""
    )
    write_source(tmp / "sources", "bad", name="bad", base_url=sim.url, extra=extra)
    text = (tmp / "sources" / "bad" / "defs.yaml").read_text()
    (tmp / "sources" / "bad" / "defs.yaml").write_text(
        text.replace("provider: simulator", f"provider: {provider}")
    )
    env = {**base_env(tmp, sim), "FIN_SOURCES_DIR": str(tmp / "sources"), "BAD_POLYGON_KEY": "k"}
    monkeypatch.delenv("S3_KEY_NOT_SET_ANYWHERE", raising=False)
    message = refused(env, tmp, sim, monkeypatch)
    assert "bad/defs.yaml" in message or "source bad" in message, message
    for part in parts:
        assert part in message, message


def test_two_sources_with_one_name_are_refused_naming_both_files(
    tmp: Path, sim: MarketSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One file's schema cannot see another file: only the load (so `dg check defs`) can."""
    for folder in ("first", "second"):
        write_source(tmp / "sources", folder, name="same", base_url=sim.url, extra="")
    env = {**base_env(tmp, sim), "FIN_SOURCES_DIR": str(tmp / "sources")}
    message = refused(env, tmp, sim, monkeypatch)
    assert message == (
        f"FIN_SOURCES_DIR={tmp}/sources: 2 sources are named same: "
        f"{tmp}/sources/first/defs.yaml, {tmp}/sources/second/defs.yaml; a name is in its "
        "source's asset keys, tables and jobs, so each source needs its own: change `name:` in "
        "all of them but one"
    )


def test_the_command_line_prints_a_bad_file_in_one_line(
    tmp: Path,
    sim: MarketSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fin_assets.tools.cli import main

    extra, _, parts = BAD_FILES["infinite quota"]
    write_source(tmp / "sources", "bad", name="bad", base_url=sim.url, extra=extra)
    for name, value in {**base_env(tmp, sim), "FIN_SOURCES_DIR": str(tmp / "sources")}.items():
        monkeypatch.setenv(name, value)
    for name in ("FIN_PROVIDER", "FIN_SYMBOLS", "FIN_API_BASE_URL", "FIN_CALENDAR"):
        monkeypatch.delenv(name, raising=False)
    assert main(["simulator", "--port", "0", "--declared-sources"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fin-assets simulator: source file {tmp}/sources/bad/defs.yaml:7:"), err
    assert parts[0] in err and len(err.strip().splitlines()) == 1, err
