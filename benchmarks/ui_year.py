"""UI benchmark: the asset page and the partition view of an asset with a year of hourly
partitions materialized, timed as the Dagster UI asks for them, over GraphQL.

    uv run --frozen python benchmarks/ui_year.py [--home DIR] [--days 365] [--repeats 5]
    uv run --frozen python benchmarks/ui_year.py --home DIR --setup-only   # populate, no timing

Setup. One source, ``year``, declared the way a deployment declares one (a YAML file under
``FIN_SOURCES_DIR``): the simulator, one symbol (AAPL), 24/7, partitions from 2025-01-01. A
declared source rather than the ``FIN_*`` shorthand because the shorthand's partitions start on
2026-01-01 and a whole year of closed hours (8,760) must be before today. Its ``raw/year/bars``
and ``core/year/bars`` are materialized for real, by the command the README documents::

    dagster asset materialize -m fin_assets.definitions \\
        --select raw/year/bars,core/year/bars --partition-range <month's first>...<month's last>

one command per calendar month (a single run each, ``BackfillPolicy.single_run()``), against the
simulator as its own process: the run fetches, writes Parquet and evaluates core/bars' checks
as in production. ``--days N`` materializes only 2025-01-01 and the N-1 days after it (to try
the benchmark quickly). ``--home DIR`` keeps the instance, data and quota store in DIR and reuses
them: a month already materialized there (both assets, every hour, read from the instance) is
not run again, so an interrupted setup resumes and a second run of the benchmark only times.
Without ``--home`` everything is in a temporary directory (on /dev/shm when there is one: the
SQLite event log is written once per event), removed at the end.

Timing. ``dagster-webserver -m fin_assets.definitions`` on a free loopback port, against that
instance. The query documents are the UI's own, taken from the webserver package's built
JavaScript (``dagster_webserver/webapp/build``): every GraphQL string literal in it is parsed,
and each operation is sent with the fragments it spreads, transitively, plus the ``__typename``
Apollo Client adds to every selection set, as POST /graphql?op=<name>. For each of the two
assets:

- the asset page (overview tab): AssetViewDefinitionQuery (the definition), the live data the
  page waits for (AssetGraphLiveQuery, AssetStaleStatusDataQuery), AssetHealthQuery (the header's
  health) and AssetOverviewMetadataEventsQuery (the latest event's metadata);
- the partition view (partitions tab): PartitionHealthQuery (every partition key and the
  materialized / failed / missing ranges), and for one materialized partition (mid-year)
  AssetPartitionDetailQuery and AssetPartitionStaleQuery.

Each query is sent ``--repeats`` times in a row, one at a time: the first request of each
("cold": the webserver has answered nothing but its load status before the first one) is
reported apart from the median of the others ("warm"); max is over all of them. Then each
page's queries are sent at once, as the browser sends them, and the time to the last answer is
reported (warm; not a target). Every answer is checked: no GraphQL error, and the figures agree
with what was materialized (e.g. PartitionHealthQuery's one materialized range covers exactly
the hours materialized, AssetGraphLiveQuery's partition stats count them). Last, an INFO line:
the asset's partitioned checks' ``partitionStatuses`` on their own (a query of ours, not the
UI's), the part of AssetGraphLiveQuery that Dagster rebuilds per materialized partition and per
check on every request (benchmarks/README.md).

Target (the run exits 1 if it is missed): every query answers in under 2 s, cold and warm.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import httpx

from benchmarks.harness import Targets, start_simulator, stop_process, table
from tests.helpers import dagster_home, free_port, materialize_command, start_cli

TARGET_S = 2.0
SOURCE = "year"
FIRST_DAY = date(2025, 1, 1)
YEAR_DAYS = 365
SYMBOL = "AAPL"
ASSETS = (f"core/{SOURCE}/bars", f"raw/{SOURCE}/bars")
SOURCE_YAML = f"""\
# benchmarks/ui_year.py: one simulator source, a year of hourly partitions from 2025-01-01.
type: fin_assets.lib.components.MarketDataSource
attributes:
  name: {SOURCE}
  provider: simulator
  symbols: [{SYMBOL}]
  calendar: "24/7"
  base_url: "{{{{ env('FIN_SIMULATOR_URL', 'http://127.0.0.1:9') }}}}"
  partitions_start: "{FIRST_DAY.isoformat()}"
"""
FILLED_BY = (
    "dagster asset materialize -m fin_assets.definitions --select "
    f"raw/{SOURCE}/bars,core/{SOURCE}/bars --partition-range <month>, one run per month, "
    "against the simulator"
)
ASSET_PAGE = (
    "AssetViewDefinitionQuery",
    "AssetGraphLiveQuery",
    "AssetStaleStatusDataQuery",
    "AssetHealthQuery",
    "AssetOverviewMetadataEventsQuery",
)
PARTITION_VIEW = ("PartitionHealthQuery", "AssetPartitionDetailQuery", "AssetPartitionStaleQuery")


def hour_key(at: datetime) -> str:
    return at.strftime("%Y-%m-%d-%H:%M")


def day_hours(first: date, last: date) -> list[str]:
    """The hourly partition keys of ``first`` .. ``last``, both included."""
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    count = ((last - first).days + 1) * 24
    return [hour_key(start + timedelta(hours=h)) for h in range(count)]


# -- the instance -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Home:
    """Where the benchmark keeps its instance, data and quota store (``--home``)."""

    root: Path

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def record(self) -> Path:
        return self.root / "ui_year.json"

    def prepare(self) -> None:
        dagster_home(self.dagster_home)
        source = self.root / "sources" / SOURCE / "defs.yaml"
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(SOURCE_YAML)
        (self.root / "logs").mkdir(exist_ok=True)

    def env(self, simulator_url: str | None = None) -> dict[str, str]:
        """The environment of every command: the declared source, nothing of the caller's."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("FIN_") and k != "DAGSTER_HOME"
        }
        env.update(
            DAGSTER_HOME=str(self.dagster_home),
            FIN_SOURCES_DIR=str(self.root / "sources"),
            FIN_DATA_DIR=str(self.root / "data"),
            FIN_QUOTA_STORE=str(self.root / "quota.sqlite"),
        )
        if simulator_url:
            env["FIN_SIMULATOR_URL"] = simulator_url
        return env

    def load_record(self) -> dict[str, Any]:
        if self.record.exists():
            return dict(json.loads(self.record.read_text()))
        return {"filled_by": FILLED_BY, "chunks": {}}

    def save_record(self, record: dict[str, Any]) -> None:
        self.record.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def materialized(home: Home) -> dict[str, set[str]]:
    """The partitions of both assets the instance holds a materialization of."""
    import dagster as dg

    with (
        mock.patch.dict(os.environ, {"DAGSTER_HOME": str(home.dagster_home)}),
        dg.DagsterInstance.get() as instance,
    ):
        return {
            asset: instance.get_materialized_partitions(dg.AssetKey(asset.split("/")))
            for asset in ASSETS
        }


def months(days: int) -> list[tuple[str, date, date]]:
    """(label, first day, last day) of each calendar month of the range, clipped to it."""
    last = FIRST_DAY + timedelta(days=days - 1)
    chunks, first = [], FIRST_DAY
    while first <= last:
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        end = min(last, following - timedelta(days=1))
        chunks.append((first.strftime("%Y-%m"), first, end))
        first = end + timedelta(days=1)
    return chunks


@dataclass
class Fill:
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    seconds: float = 0.0  # this run's materialize commands
    recorded_seconds: float = 0.0  # every chunk's, as recorded when it ran


def fill(home: Home, days: int) -> Fill:
    """Materialize every month of the range the instance does not hold yet (module docstring)."""
    have = materialized(home)
    record = home.load_record()
    result = Fill()
    todo = []
    for label, first, last in months(days):
        month = set(day_hours(first, last))
        if all(month <= have[asset] for asset in ASSETS):
            result.reused.append(label)
        else:
            todo.append((label, first, last))
    if todo:
        sim, url = start_simulator(log_path=home.root / "logs" / "simulator.log")
        try:
            print(f"simulator {url}; materializing {len(todo)} month(s)", flush=True)
            for label, first, last in todo:
                hours = day_hours(first, last)
                command = [
                    sys.executable,
                    "-m",
                    *materialize_command(
                        ",".join(ASSETS), "--partition-range", f"{hours[0]}...{hours[-1]}"
                    ),
                ]
                log = home.root / "logs" / f"materialize-{label}.log"
                began = time.perf_counter()
                with log.open("w") as out:
                    code = subprocess.call(
                        command,
                        cwd=Path(__file__).resolve().parents[1],
                        env=home.env(url),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                seconds = time.perf_counter() - began
                if code != 0:
                    raise RuntimeError(
                        f"materializing {label} failed ({code}), {log}:\n{log.read_text()[-3000:]}"
                    )
                result.ran.append(label)
                result.seconds += seconds
                record["chunks"][label] = {
                    "partitions": len(hours),
                    "seconds": round(seconds, 1),
                    "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                }
                home.save_record(record)
                print(
                    f"  {label}: {len(hours)} partitions in {seconds:.1f} s "
                    f"({seconds / len(hours):.3f} s/partition)",
                    flush=True,
                )
        finally:
            stop_process(sim)
        have = materialized(home)
    expected = set(day_hours(FIRST_DAY, FIRST_DAY + timedelta(days=days - 1)))
    for asset in ASSETS:
        if have[asset] != expected:
            raise RuntimeError(
                f"{asset}: the instance holds {len(have[asset])} materialized partitions, "
                f"{len(expected)} expected ({len(expected - have[asset])} missing, "
                f"{len(have[asset] - expected)} beyond --days {days}: another --home?)"
            )
    result.recorded_seconds = sum(
        float(record["chunks"][label]["seconds"])
        for label, _, _ in months(days)
        if label in record["chunks"]
    )
    return result


# -- the UI's queries -------------------------------------------------------------------------
def ui_documents(operations: tuple[str, ...]) -> tuple[dict[str, str], str]:
    """Each operation's GraphQL document as the UI sends it: the operation and every fragment
    it spreads (transitively), verbatim from the webserver package's built JavaScript."""
    import dagster_webserver
    from graphql import GraphQLSyntaxError, parse, print_ast
    from graphql.language import (
        FieldNode,
        FragmentDefinitionNode,
        FragmentSpreadNode,
        NameNode,
        OperationDefinitionNode,
        SelectionSetNode,
        Visitor,
        visit,
    )

    build = Path(dagster_webserver.__file__).parent / "webapp" / "build"
    # A string literal that starts with a definition ("\n  fragment Name on ...": how the
    # bundle holds a gql`...` template, split where it interpolates other fragments).
    literal = re.compile(
        r'"((?:\\n|\s)*(?:query|fragment|mutation|subscription)\s+\w+(?:[^"\\\n]|\\.)*)"'
    )
    found: dict[str, set[str]] = {}
    spreads: dict[str, set[str]] = {}
    files = 0

    class Spreads(Visitor):
        def __init__(self) -> None:
            super().__init__()
            self.names: set[str] = set()

        def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
            self.names.add(node.name.value)

    class AddTypename(Visitor):
        """What Apollo Client's cache does to every document before sending it (the UI's
        ``InMemoryCache`` keeps its default ``addTypename``): ``__typename`` in every selection
        set but the operation's own."""

        def enter_selection_set(self, node: SelectionSetNode, _key: Any, parent: Any, *_: Any):
            if isinstance(parent, OperationDefinitionNode) or any(
                isinstance(s, FieldNode) and s.name.value == "__typename" for s in node.selections
            ):
                return None
            typename = FieldNode(
                alias=None,
                name=NameNode(value="__typename"),
                arguments=(),
                directives=(),
                selection_set=None,
            )
            return SelectionSetNode(selections=(*node.selections, typename))

    for path in sorted(build.rglob("*.js")):
        text = path.read_text(errors="replace")
        if "fragment " not in text and "query " not in text:
            continue
        files += 1
        for match in literal.finditer(text):
            try:
                source = json.loads(f'"{match.group(1)}"')
                document = parse(source)
            except (ValueError, GraphQLSyntaxError):
                continue  # not a GraphQL document (or not a whole one)
            for node in document.definitions:
                if isinstance(node, FragmentDefinitionNode | OperationDefinitionNode) and node.name:
                    assert node.loc is not None
                    name = node.name.value
                    found.setdefault(name, set()).add(source[node.loc.start : node.loc.end])
                    visitor = Spreads()
                    visit(node, visitor)
                    spreads.setdefault(name, set()).update(visitor.names)
    documents = {}
    for operation in operations:
        needed, todo = [], [operation]
        while todo:
            name = todo.pop()
            if name in needed:
                continue
            texts = found.get(name)
            if not texts:
                raise RuntimeError(f"{name} is not in the UI bundle under {build}")
            if len(texts) > 1:
                raise RuntimeError(f"{name} has {len(texts)} different texts in the UI bundle")
            needed.append(name)
            todo.extend(sorted(spreads[name]))
        document = parse("\n\n".join(next(iter(found[n])) for n in needed))
        documents[operation] = print_ast(visit(document, AddTypename()))
    where = f"{len(found)} operations and fragments in {files} files of {build}"
    return documents, where


# -- the webserver ----------------------------------------------------------------------------
LOAD_STATUS = """
query { workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


@contextmanager
def webserver(home: Home) -> Iterator[str]:
    """``dagster-webserver`` on the instance; yields its URL once the code location is loaded."""
    port = free_port()
    log_path = home.root / "logs" / "webserver.log"
    with log_path.open("w") as log:
        proc = start_cli(
            ["dagster-webserver", "-m", "fin_assets.definitions"]
            + ["-h", "127.0.0.1", "-p", str(port)],
            env=home.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the webserver exited: {log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the webserver did not load in 300 s: {log_path}")
            try:
                body = httpx.post(f"{url}/graphql", json={"query": LOAD_STATUS}, timeout=10).json()
            except (httpx.HTTPError, ValueError):
                time.sleep(0.5)
                continue
            entries = body["data"]["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                for entry in entries:
                    loaded = entry["locationOrLoadError"] or {}
                    if loaded.get("__typename") == "PythonError":
                        raise RuntimeError(f"{entry['name']} failed to load: {loaded['message']}")
                break
            time.sleep(0.5)
        yield url
    finally:
        stop_process(proc)


# -- one query, timed and checked -------------------------------------------------------------
@dataclass
class Probe:
    page: str
    asset: str
    operation: str
    variables: dict[str, Any]
    check: Callable[[dict[str, Any]], str]  # the answer's data -> what it returned; raises
    times: list[float] = field(default_factory=list)
    returned: str = ""

    @property
    def cold(self) -> float:
        return self.times[0]

    @property
    def warm(self) -> float:
        return statistics.median(self.times[1:]) if len(self.times) > 1 else float("nan")


def post(client: httpx.Client, document: str, operation: str, variables: dict[str, Any]) -> Any:
    """One POST /graphql as the UI sends it; the answer's ``data``, any error raised."""
    response = client.post(
        "/graphql",
        params={"op": operation},  # the UI names the operation in the URL too
        json={"operationName": operation, "variables": variables, "query": document},
    )
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(f"{operation}: {body['errors']}")
    return body["data"]


def run_probe(client: httpx.Client, documents: dict[str, str], probe: Probe) -> None:
    began = time.perf_counter()
    data = post(client, documents[probe.operation], probe.operation, probe.variables)
    probe.times.append(time.perf_counter() - began)
    returned = probe.check(data)
    if probe.returned and returned != probe.returned:
        raise RuntimeError(f"{probe.operation} changed its answer: {probe.returned} -> {returned}")
    probe.returned = returned


class Wrong(RuntimeError):
    """An answer that does not agree with what was materialized."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise Wrong(what)


@dataclass(frozen=True)
class Expected:
    """What the answers must say: the materialized hours, and every partition of the asset."""

    first: str
    last: str
    materialized: int
    total: int  # partitions from 2025-01-01 to the last closed hour, materialized or not
    detail: str  # the one partition whose detail is asked for


def probes(expected: Expected) -> list[Probe]:
    found: list[Probe] = []
    for asset in ASSETS:
        path = asset.split("/")
        key = {"path": path}

        def definition(data: dict[str, Any], asset: str = asset) -> str:
            node = data["assetOrError"]["definition"]
            expect(node is not None, f"{asset}: no definition")
            partitions = node["partitionDefinition"]
            expect(
                [d["type"] for d in partitions["dimensionTypes"]] == ["TIME_WINDOW"],
                f"{asset}: partitions {partitions}",
            )
            expect(len(data["assetOrError"]["assetMaterializations"]) == 1, f"{asset}: none")
            return f"the definition; partitions: {partitions['description']}"

        def live(data: dict[str, Any], asset: str = asset) -> str:
            (node,) = data["assetNodes"]
            stats = node["partitionStats"]
            expect(
                stats["numMaterialized"] == expected.materialized
                and expected.total <= stats["numPartitions"] <= expected.total + 1
                and stats["numFailed"] == 0,
                f"{asset}: partitionStats {stats}",
            )
            checks = [
                c for c in node["assetChecksOrError"].get("checks", []) if c["partitionStatuses"]
            ]
            for check in checks:  # the partitioned checks ran on every materialized hour
                ranges = check["partitionStatuses"]["ranges"]
                expect(
                    (ranges[0]["startKey"], ranges[-1]["endKey"])
                    == (expected.first, expected.last),
                    f"{asset}: check {check['name']} {ranges}",
                )
            shown = f"; {len(checks)} partitioned checks over them" if checks else ""
            return (
                f"{stats['numMaterialized']:,} of {stats['numPartitions']:,} partitions "
                f"materialized, {stats['numFailed']} failed{shown}"
            )

        def stale(data: dict[str, Any], asset: str = asset) -> str:
            (node,) = data["assetNodes"]
            expect(node["assetKey"]["path"] == asset.split("/"), f"{asset}: {node['assetKey']}")
            return f"staleStatus {node['staleStatus']}, {len(node['staleCauses'])} causes"

        def health(data: dict[str, Any], asset: str = asset) -> str:
            (node,) = data["assetsOrError"]["nodes"]
            expect(node["latestMaterializationTimestamp"] is not None, f"{asset}: {node}")
            health = node["assetHealth"]  # null where the instance does not compute it
            if health is None:
                return "latest materialization time; assetHealth null (not computed here)"
            meta = health["materializationStatusMetadata"] or {}
            missing, total = meta.get("numMissingPartitions"), meta.get("totalNumPartitions")
            expect(
                missing is None or total is None or total - missing == expected.materialized,
                f"{asset}: health {meta}",
            )
            shown = f", {missing:,} of {total:,} missing" if total is not None else ""
            return f"health {health['assetHealth']}{shown}"

        def latest_event(data: dict[str, Any], asset: str = asset) -> str:
            (event,) = data["assetOrError"]["assetMaterializations"]
            expect(event["partition"] == expected.last, f"{asset}: latest {event['partition']}")
            return f"latest materialization {event['partition']}"

        def partition_health(data: dict[str, Any], asset: str = asset) -> str:
            node = data["assetNodeOrError"]
            (dimension,) = node["partitionKeysByDimension"]
            ranges = node["assetPartitionStatuses"]["ranges"]
            done = [r for r in ranges if r["status"] == "MATERIALIZED"]
            expect(
                [(r["startKey"], r["endKey"]) for r in done] == [(expected.first, expected.last)]
                and len(done) == len(ranges)
                and expected.total <= len(dimension["partitionKeys"]) <= expected.total + 1,
                f"{asset}: ranges {ranges}",
            )
            return (
                f"{len(dimension['partitionKeys']):,} keys; materialized {done[0]['startKey']}"
                f"...{done[0]['endKey']}, the only range"
            )

        def detail(data: dict[str, Any], asset: str = asset) -> str:
            node = data["assetOrError"]
            events = node["assetEventHistory"]["results"]
            run = node["definition"]["latestRunForPartition"]
            expect(
                len(events) == 1
                and events[0]["partition"] == expected.detail
                and events[0]["__typename"] == "MaterializationEvent"
                and run is not None
                and run["status"] == "SUCCESS",
                f"{asset}: detail {events}, run {run}",
            )
            return f"{expected.detail}: 1 materialization, run {run['status']}"

        def partition_stale(data: dict[str, Any], asset: str = asset) -> str:
            node = data["assetNodeOrError"]
            return f"{expected.detail}: staleStatus {node['staleStatus']}"

        one = {"assetKey": key, "partitionKey": expected.detail}
        found += [
            Probe("asset page", asset, "AssetViewDefinitionQuery", {"assetKey": key}, definition),
            Probe("asset page", asset, "AssetGraphLiveQuery", {"assetKeys": [key]}, live),
            Probe("asset page", asset, "AssetStaleStatusDataQuery", {"assetKeys": [key]}, stale),
            Probe("asset page", asset, "AssetHealthQuery", {"assetKeys": [key]}, health),
            Probe(
                "asset page",
                asset,
                "AssetOverviewMetadataEventsQuery",
                {"assetKey": key},
                latest_event,
            ),
            Probe("partitions", asset, "PartitionHealthQuery", {"assetKey": key}, partition_health),
            Probe("partitions", asset, "AssetPartitionDetailQuery", one, detail),
            Probe("partitions", asset, "AssetPartitionStaleQuery", one, partition_stale),
        ]
    return found


CHECK_STATUSES = """
query CheckPartitionStatuses($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys) { assetChecksOrError { ... on AssetChecks { checks {
    name partitionStatuses { ... on AssetCheckTimePartitionStatuses { ranges { status } } }
  } } } }
}
"""


def checks_partition_statuses(client: httpx.Client, asset: str) -> tuple[int, float]:
    """(partitioned checks, seconds): the asset's checks' partition statuses on their own, the
    part of AssetGraphLiveQuery that is computed per materialized partition and per check."""
    variables = {"assetKeys": [{"path": asset.split("/")}]}
    began = time.perf_counter()
    data = post(client, CHECK_STATUSES, "CheckPartitionStatuses", variables)
    seconds = time.perf_counter() - began
    (node,) = data["assetNodes"]
    checks = node["assetChecksOrError"].get("checks", [])
    return sum(1 for c in checks if c["partitionStatuses"]), seconds


def page_load(url: str, documents: dict[str, str], page: list[Probe], repeats: int) -> list[float]:
    """A page's queries sent at once (one connection each, as a browser does): time to the
    last answer, ``repeats`` times."""
    times = []
    clients = [httpx.Client(base_url=url, timeout=120) for _ in page]
    try:
        with ThreadPoolExecutor(len(page)) as pool:
            for _ in range(repeats):
                began = time.perf_counter()
                answers = pool.map(
                    lambda pair: post(
                        pair[0], documents[pair[1].operation], pair[1].operation, pair[1].variables
                    ),
                    zip(clients, page, strict=True),
                )
                for probe, data in zip(page, answers, strict=True):
                    probe.check(data)
                times.append(time.perf_counter() - began)
    finally:
        for client in clients:
            client.close()
    return times


# -- main -------------------------------------------------------------------------------------
@contextmanager
def home_dir(given: str | None) -> Iterator[Home]:
    if given:
        root = Path(given).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        yield Home(root)
        return
    shm = Path("/dev/shm")
    scratch = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    root = Path(tempfile.mkdtemp(prefix="fin-assets-bench-ui-", dir=scratch))
    try:
        yield Home(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", help="keep the instance here and reuse it (default: temporary)")
    parser.add_argument("--days", type=int, default=YEAR_DAYS, help="days from 2025-01-01")
    parser.add_argument("--repeats", type=int, default=5, help="requests per query")
    parser.add_argument("--setup-only", action="store_true", help="populate --home, time nothing")
    args = parser.parse_args(argv)
    if not 1 <= args.days <= YEAR_DAYS or args.repeats < 2:
        parser.error(f"--days must be within 1..{YEAR_DAYS} and --repeats at least 2")
    began = time.perf_counter()
    phases: list[tuple[str, float]] = []

    def phase(name: str, since: float) -> float:
        now = time.perf_counter()
        phases.append((name, now - since))
        print(f"[{name}: {now - since:.1f} s]", flush=True)
        return now

    with home_dir(args.home) as home:
        home.prepare()
        print(f"home {home.root}; {args.days} days of hourly partitions from {FIRST_DAY}")
        filled = fill(home, args.days)
        mark = phase("setup (materialize)" if filled.ran else "setup (reused)", began)
        hours = day_hours(FIRST_DAY, FIRST_DAY + timedelta(days=args.days - 1))
        how = (
            f"instance filled by {FILLED_BY}: {len(filled.ran)} month(s) materialized now in "
            f"{filled.seconds:.0f} s, {len(filled.reused)} reused from --home; every month's "
            f"materialize commands took {filled.recorded_seconds:.0f} s in all "
            f"({filled.recorded_seconds / len(hours):.3f} s/partition)"
        )
        print(how)
        if args.setup_only:
            return 0
        documents, where = ui_documents(ASSET_PAGE + PARTITION_VIEW)
        mark = phase("extract the UI's queries", mark)
        print(f"queries from the UI bundle: {where}")
        now_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        start = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC)
        expected = Expected(
            first=hours[0],
            last=hours[-1],
            materialized=len(hours),
            total=int((now_hour - start).total_seconds() // 3600),
            detail=hours[len(hours) // 2],
        )
        with webserver(home) as url:
            mark = phase("start the webserver, load the code location", mark)
            plan = probes(expected)
            with httpx.Client(base_url=url, timeout=120) as client:
                for probe in plan:  # cold: every query's first request, in the UI's order
                    run_probe(client, documents, probe)
                for _ in range(args.repeats - 1):
                    for probe in plan:
                        run_probe(client, documents, probe)
            mark = phase(f"{len(plan)} queries x {args.repeats}", mark)
            pages = {}
            for asset in ASSETS:
                for name in ("asset page", "partitions"):
                    page = [p for p in plan if p.asset == asset and p.page == name]
                    pages[(asset, name)] = page_load(url, documents, page, args.repeats)
            mark = phase("pages, queries at once", mark)
            with httpx.Client(base_url=url, timeout=120) as client:
                checks_alone = {asset: checks_partition_statuses(client, asset) for asset in ASSETS}
            mark = phase("the checks' partition statuses alone", mark)

    print()
    rows = [
        [
            f"{p.asset} {p.page}",
            p.operation,
            f"{p.cold:.3f}",
            f"{p.warm:.3f}",
            f"{max(p.times):.3f}",
            p.returned,
        ]
        for p in plan
    ]
    rows += [
        [
            f"{asset} {name}",
            f"all {len([p for p in plan if p.asset == asset and p.page == name])} at once (warm)",
            "—",
            f"{statistics.median(times):.3f}",
            f"{max(times):.3f}",
            "time to the last answer",
        ]
        for (asset, name), times in pages.items()
    ]
    print(table(["page", "query", "cold s", "warm median s", "max s", "returned"], rows))
    print()
    print(how)
    print(
        f"{len(plan)} queries x {args.repeats} requests; cold = each query's first request; "
        f"partition detail for {expected.detail}"
    )
    print("phases: " + "; ".join(f"{name} {seconds:.1f} s" for name, seconds in phases))
    print()
    targets = Targets()
    for name in ("asset page", "partitions"):
        worst = max((p for p in plan if p.page == name), key=lambda p: max(p.times))
        targets.check(
            f"every {name} query < {TARGET_S:g} s (slowest: {worst.asset} {worst.operation})",
            max(worst.times) < TARGET_S,
            f"{max(worst.times):.3f} s",
        )
    for (asset, name), times in pages.items():
        targets.note(f"{asset} {name}, every query at once (warm, max)", f"{max(times):.3f} s")
    for asset, (count, seconds) in checks_alone.items():
        if count:
            targets.note(
                f"{asset}: its {count} partitioned checks' partitionStatuses alone, the part of "
                "AssetGraphLiveQuery that grows with them (not a UI query; warm)",
                f"{seconds:.3f} s",
            )
    code = targets.report()
    print(f"\nruntime {time.perf_counter() - began:.1f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
