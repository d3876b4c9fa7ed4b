"""``Warehouse``: processed tables, one file per partition or per whole table, replaced atomically.

Backends are selected by URL (``warehouse_from_url``): the embedded default is a Parquet lake;
``postgresql://`` selects ``PostgresWarehouse`` (``resources/storage/postgres.py``), the same
interface over PostgreSQL tables.

Parquet layout:

- a partitioned table is a folder, ``<root>/<table>/<partition>.parquet``, where
  ``<partition>`` is the partition key without its colon (``2026-01-05-0300``);
- a whole table is one file beside those folders, ``<root>/<table>.parquet``, its rows sorted by
  its key. Being a file, not a folder, it is never listed among a table's partitions, and its
  name goes through the same ``validate_table``/``safe_join`` checks;
- an hourly table of few rows per hour (the interval bars) can keep its hours a day per file,
  ``<root>/<table>/<YYYY-MM-DD>.hours.parquet`` (see "Day files" below);
- an hourly table has per-day compacted copies for reads, ``<root>/.compacted/<table>/
  <YYYY-MM-DD>.parquet`` (see below), beside a ``<YYYY-MM-DD>.lock`` each. They are outside the
  table folder because ``pl.scan_parquet("<root>/<table>")`` reads folders recursively and must
  still give each row once; ``.compacted`` is no valid table name, so it is never taken for one.

Replacing a partition or a whole table writes a temp file and renames it over the old one, so a
crash mid-write leaves the previous version readable, and re-running a write replaces exactly
that file instead of appending to it; of two concurrent writers of one file, the last rename
wins, whole. Which kind a name is, is checked before each write (a ``<table>.parquet`` file or
partitions under ``<table>/``): two writers racing to create one name as both kinds at once are
not stopped, which is a bug of theirs, not a state the lake reaches otherwise.

Compacted days. Reading a symbol's year of an hourly table means opening 8,760 hour files; with
one file per day it is 365. The hour files stay the truth (writes, ``read_partition``,
``partition_keys`` see only them); ``compact`` (called by a step after writing) writes, per day
touched, one file of the rows of every hour file of that day, in hour order, with a record in
its Parquet key-value metadata of the hour files it holds and their identity, (inode, size,
mtime_ns): a rewrite renames a new file in, so a new inode. ``scan`` uses a day's copy only when
the requested keys of that day are exactly its hours, in order, and each of them has the
identity recorded; otherwise (an hour rewritten, added or deleted since, the copy missing, its
record unreadable or of another table or day) it reads that day's hour files. A copy can be
stale, then, but is never read stale or together with the hours it holds.

Why the record can be trusted:

- ``compact`` opens each hour file, takes the identity of the open descriptor (``fstat``) and
  reads the bytes from that descriptor: a file replaced meanwhile is recorded as what was read;
- the record is in the copy's own footer, replaced with it by one rename: it cannot be paired
  with another version of the copy;
- compactions of one day hold an exclusive ``flock`` on its lock file and look at the hour
  files only once they hold it, so a copy is only ever replaced by one built from hour files
  read later: every write followed by its compaction leaves the day's copy current, and a
  reader that checked a copy and collects later reads that copy or a newer one, as it would
  read newer hour files. (Lock files are never removed: removing one a process waits on would
  let a third lock a new file.)

The rows of hour files this instance wrote last (``RECENT_WRITES``) are compacted from memory,
not read back, when the file still has the identity the write gave it (``atomic_write`` returns
it): the same bytes, so the same record as a read would give; a file replaced since is read.

Day files. ``replace_partitions(..., by_day=True)`` stores the hours of each UTC day in one
file, in hour order, with a record in its footer of the run of rows (offset, count) each hour
occupies: a table of a few rows per hour (2 for the 1h bars of 2 symbols) then costs a file per
day, not per hour (``make bench-intervals``). Each hour is still a partition: listed, read and
replaced on its own (``replace_partition`` of an hour whose day has a day file rewrites that
file with the hour replaced), and an hour without rows is recorded as materialized. The first
by-day write of a day folds that day's hour files in and removes them (a lake written an hour
per file is taken in day by day); a day never written by day keeps its hour files, and reads
mix the two. A day file is truth, so one without a valid record fails reads naming it. Every
write of an hour, every day-file write and every compaction of a day hold that day's lock
(``.compacted/<table>/<YYYY-MM-DD>.lock``), so none of them can lose another's hour; a day
stored by day has no compacted copy (its file is already one).

Identities assume a file system that does not give a new file the inode, size and mtime_ns of
the one it replaced; a lake copied elsewhere (new inodes) reads its hour files until compacted.
Daily tables are not compacted: a year is already 365 files.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from resources.errors import InvalidInputError, StorageError
from resources.storage.atomic import TEMP_PREFIX, atomic_write, sweep_temp_files
from resources.storage.base import (
    WHOLE_TABLE,
    WriteResult,
    check_table_key,
    wrong_kind_error,
)
from resources.validation import (
    HOURLY_KEY_RE,
    partition_file_stem,
    partition_key_from_stem,
    safe_join,
    validate_partition_key,
    validate_table,
)

logger = logging.getLogger("fin_assets.warehouse")

# The folder of the compacted days, under the root: a leading dot is no valid table name.
COMPACTED_DIR = ".compacted"
# The key of a compacted day's record in its Parquet key-value metadata.
COMPACTION_RECORD_KEY = "fin_assets.compacted_from"
_HOURS = range(24)

# A day file: the hours of one UTC day of a table stored together (``replace_partitions(...,
# by_day=True)``), ``<table>/<YYYY-MM-DD>.hours.parquet``, with a record of its hours.
DAY_FILE_SUFFIX = ".hours.parquet"
DAY_RECORD_KEY = "fin_assets.hours"

# (st_ino, st_size, st_mtime_ns): which version of an hour file. atomic_write renames a new file
# in for every write, so a rewrite has a new inode even when its size and mtime repeat.
FileIdentity = tuple[int, int, int]


def file_identity(stat: os.stat_result) -> FileIdentity:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class CompactionRecord:
    """What a compacted day holds: the stems of the hour files it was built from, in hour
    order, and the identity of the version of each that was read."""

    table: str
    day: str  # YYYY-MM-DD
    hours: dict[str, FileIdentity]  # hour file stem (2026-01-05-0300) -> identity

    def to_json(self) -> str:
        return json.dumps(
            {"table": self.table, "day": self.day, "hours": self.hours}, separators=(",", ":")
        )

    @classmethod
    def from_json(cls, text: str) -> CompactionRecord:
        """The record ``to_json`` wrote; a ``ValueError`` for anything else."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a compaction record is a JSON object")
        table, day, hours = data.get("table"), data.get("day"), data.get("hours")
        if not isinstance(table, str) or not isinstance(day, str) or not isinstance(hours, dict):
            raise ValueError("a compaction record has a table, a day and hours")
        identities: dict[str, FileIdentity] = {}
        for stem, identity in hours.items():
            if not (
                isinstance(identity, list)
                and len(identity) == 3
                and all(type(n) is int for n in identity)
            ):
                raise ValueError(f"hour {stem}: {identity!r} is no (inode, size, mtime_ns)")
            identities[stem] = (identity[0], identity[1], identity[2])
        return cls(table, day, identities)


@dataclass(frozen=True)
class DayRecord:
    """What a day file holds: its hours (hour file stems, in hour order), each as the run of
    rows (offset, count) it occupies; an hour with no rows is still materialized."""

    table: str
    day: str
    hours: dict[str, tuple[int, int]]

    def to_json(self) -> str:
        return json.dumps(
            {"table": self.table, "day": self.day, "hours": self.hours}, separators=(",", ":")
        )

    @classmethod
    def read(cls, path: Path, *, table: str, day: str) -> DayRecord:
        """The record of day file ``path``; a ``StorageError`` naming the file if it has none
        that is valid for ``table`` and ``day`` (a day file is truth: never guessed)."""
        try:
            text = pl.read_parquet_metadata(path).get(DAY_RECORD_KEY)
            data = json.loads(text) if text is not None else None
            if not isinstance(data, dict):
                raise ValueError("no record of its hours")
            hours = data["hours"]
            if (
                not isinstance(hours, dict)
                or (data["table"], data["day"]) != (table, day)
                or not all(
                    isinstance(span, list) and len(span) == 2 and all(type(n) is int for n in span)
                    for span in hours.values()
                )
            ):
                raise ValueError("no valid record of its hours")
        except (OSError, ValueError, KeyError, pl.exceptions.PolarsError) as exc:
            raise StorageError(f"{table} day {day}: unreadable day file {path}: {exc}") from None
        return cls(table, day, {stem: (span[0], span[1]) for stem, span in hours.items()})


def _write(frame: pl.DataFrame, metadata: dict[str, str] | None = None) -> Callable[[Path], None]:
    return lambda tmp: frame.write_parquet(
        tmp, compression="zstd", statistics=True, metadata=metadata
    )


def _read_record(path: Path) -> CompactionRecord | None:
    """The record in a compacted day's footer, or None if the file is missing or unreadable or
    holds no valid record: the caller then reads (or rebuilds from) the hour files."""
    try:
        text = pl.read_parquet_metadata(path).get(COMPACTION_RECORD_KEY)
        return None if text is None else CompactionRecord.from_json(text)
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return None


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing, never removed)."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:  # the first lock of the table: its folder, then the file
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed
        yield
    finally:
        os.close(fd)


def _day_of(key: str) -> str | None:
    """The UTC day of an hourly key (``2026-01-05-03:00`` -> ``2026-01-05``); None if daily."""
    return key[:10] if HOURLY_KEY_RE.fullmatch(key) else None


class ParquetWarehouse:
    # Hour files this instance wrote last, with their identity and rows: ``compact`` takes the
    # rows from here instead of reading the file back when the file is still that version
    # (same identity: the bytes this instance wrote). Bounded: a step compacts each day right
    # after writing it, so a day of hours of a few tables is what it needs.
    RECENT_WRITES = 128

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self._recent: OrderedDict[Path, tuple[FileIdentity, pl.DataFrame]] = OrderedDict()
        # Per table: its folder, resolved under the root once; and the tables this instance
        # wrote partitions to (checked then not to be whole tables: not checked again).
        self._dirs: dict[str, Path] = {}
        self._partitioned: set[str] = set()
        self._lock = threading.Lock()  # writers in several threads share _recent

    @property
    def location(self) -> str:
        return str(self.root)

    def _table_dir(self, table: str) -> Path:
        directory = self._dirs.get(table)
        if directory is None:
            directory = self._dirs[table] = safe_join(self.root, validate_table(table))
        return directory

    def _path(self, table: str, partition_key: str) -> Path:
        # The stem is a validated key (digits, dashes): it cannot leave the table's folder.
        return self._table_dir(table) / f"{partition_file_stem(partition_key)}.parquet"

    def _table_path(self, table: str) -> Path:
        return safe_join(self.root, f"{validate_table(table)}.parquet")

    def _compacted_dir(self, table: str) -> Path:
        return safe_join(self.root, COMPACTED_DIR, validate_table(table))

    # -- which kind a name is ------------------------------------------------------------------
    def _refuse_whole(self, table: str) -> None:
        """For partition calls: refuse a name that is a whole table."""
        if self._table_path(table).exists():
            raise wrong_kind_error(table, kind="whole")

    def _refuse_partitioned(self, table: str) -> None:
        """For whole-table calls: refuse a name that holds partitions."""
        keys = self._partition_keys(table)
        if keys:
            raise wrong_kind_error(
                table, kind="hourly" if HOURLY_KEY_RE.fullmatch(keys[0]) else "daily"
            )

    # -- partitioned tables --------------------------------------------------------------------
    def replace_partition(self, table: str, partition_key: str, frame: pl.DataFrame) -> WriteResult:
        path = self._path(table, partition_key)
        if table not in self._partitioned:
            self._refuse_whole(table)
            self._partitioned.add(table)
        day = _day_of(partition_key)
        if day is None:
            written = atomic_write(path, _write(frame))
            return WriteResult(table, partition_key, frame.height, written.st_size, str(path))
        with self._day_lock(table, day):
            day_file = self._day_path(table, day)
            if day_file.exists():  # the day is stored by day: the hour goes into its file
                return self._rewrite_day(table, day, {path.stem: frame})[0]
            written = atomic_write(path, _write(frame))
        with self._lock:
            self._recent.pop(path, None)
            self._recent[path] = (file_identity(written), frame)
            while len(self._recent) > self.RECENT_WRITES:
                self._recent.popitem(last=False)
        return WriteResult(table, partition_key, frame.height, written.st_size, str(path))

    def replace_partitions(
        self, table: str, partitions: Sequence[tuple[str, pl.DataFrame]], *, by_day: bool = False
    ) -> list[WriteResult]:
        """Several partitions replaced, as ``replace_partition`` each; with ``by_day`` (hourly
        keys), the hours of each UTC day are stored together in its day file, merged with that
        day's other hours (module docstring): one file per day instead of one per hour."""
        if not by_day:
            return [self.replace_partition(table, key, frame) for key, frame in partitions]
        if table not in self._partitioned:
            self._refuse_whole(table)
            self._partitioned.add(table)
        by_days: dict[str, dict[str, pl.DataFrame]] = {}
        for key, frame in partitions:
            day = _day_of(validate_partition_key(key))
            if day is None:
                raise InvalidInputError(f"{table} partition {key}: only hours are stored by day")
            by_days.setdefault(day, {})[partition_file_stem(key)] = frame
        results: list[WriteResult] = []
        for day, hours in by_days.items():
            with self._day_lock(table, day):
                results += self._rewrite_day(table, day, hours)
        return results

    def _day_path(self, table: str, day: str) -> Path:
        return self._table_dir(table) / f"{day}{DAY_FILE_SUFFIX}"

    def _rewrite_day(
        self, table: str, day: str, replacements: dict[str, pl.DataFrame]
    ) -> list[WriteResult]:
        """Under the day's lock: the day file rewritten with ``replacements`` (hour stem ->
        rows) in place of those hours, keeping its other hours and taking in the day's hour
        files (an hour file is folded into the day file, then removed; the day's compacted
        copy goes too, the day file being what reads use)."""
        directory = self._table_dir(table)
        day_file = self._day_path(table, day)
        hours: dict[str, pl.DataFrame] = {}
        if day_file.exists():
            record = DayRecord.read(day_file, table=table, day=day)
            kept = {stem: span for stem, span in record.hours.items() if stem not in replacements}
            if kept:  # read only when some of its hours stay (a whole day rewritten: not)
                stored = pl.read_parquet(day_file)
                hours = {stem: stored.slice(o, n) for stem, (o, n) in kept.items()}
        folded = [
            path for hour in _HOURS if (path := directory / f"{day}-{hour:02d}00.parquet").exists()
        ]
        for path in folded:
            if path.stem not in replacements and path.stem not in hours:
                try:
                    hours[path.stem] = pl.read_parquet(path)
                except pl.exceptions.PolarsError as exc:
                    raise StorageError(
                        f"{table} partition {partition_key_from_stem(path.stem)}: unreadable "
                        f"file {path}: {exc}"
                    ) from None
        hours.update(replacements)
        ordered = sorted(hours)
        spans: dict[str, tuple[int, int]] = {}
        offset = 0
        for stem in ordered:
            spans[stem] = (offset, hours[stem].height)
            offset += hours[stem].height
        try:
            frame = pl.concat([hours[stem] for stem in ordered], how="vertical")
        except pl.exceptions.PolarsError as exc:
            raise StorageError(
                f"{table} day {day}: its hours do not share one schema: {exc}"
            ) from None
        record = DayRecord(table, day, spans)
        written = atomic_write(day_file, _write(frame, {DAY_RECORD_KEY: record.to_json()}))
        for path in folded:  # their rows are in the day file now
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self._compacted_dir(table) / f"{day}.parquet").unlink()
        return [
            WriteResult(
                table,
                partition_key_from_stem(stem),
                replacements[stem].height,
                written.st_size,
                str(day_file),
            )
            for stem in sorted(replacements)
        ]

    def read_partition(self, table: str, partition_key: str) -> pl.DataFrame | None:
        path = self._path(table, partition_key)
        day = _day_of(partition_key)
        if day is not None and (day_file := self._day_path(table, day)).exists():
            record = DayRecord.read(day_file, table=table, day=day)
            if path.stem in record.hours:
                offset, rows = record.hours[path.stem]
                return pl.scan_parquet(day_file).slice(offset, rows).collect()
        if not path.exists():
            self._refuse_whole(table)
            return None
        try:
            return pl.read_parquet(path)
        except pl.exceptions.PolarsError as exc:
            raise StorageError(
                f"{table} partition {partition_key}: unreadable file {path}: {exc}"
            ) from None

    def partition_keys(self, table: str) -> list[str]:
        keys = self._partition_keys(table)
        if not keys:
            self._refuse_whole(table)
        return keys

    def _partition_keys(self, table: str) -> list[str]:
        directory = safe_join(self.root, validate_table(table))
        stems = set(self._partition_files(directory))
        for day, day_file in self._day_files(directory).items():
            stems.update(DayRecord.read(day_file, table=table, day=day).hours)
        return sorted(partition_key_from_stem(s) for s in stems)

    @staticmethod
    def _partition_files(directory: Path) -> dict[str, os.DirEntry[str]]:
        """The partition files of a table folder by stem, from one listing; {} if none."""
        try:
            with os.scandir(directory) as listing:
                return {
                    e.name[: -len(".parquet")]: e
                    for e in listing
                    if e.name.endswith(".parquet")
                    and not e.name.startswith(TEMP_PREFIX)
                    and not e.name.endswith(DAY_FILE_SUFFIX)
                }
        except (FileNotFoundError, NotADirectoryError):
            return {}

    @staticmethod
    def _day_files(directory: Path) -> dict[str, Path]:
        """The day files of a table folder by day, from one listing; {} if none."""
        try:
            with os.scandir(directory) as listing:
                return {
                    e.name[: -len(DAY_FILE_SUFFIX)]: Path(e.path)
                    for e in listing
                    if e.name.endswith(DAY_FILE_SUFFIX) and not e.name.startswith(TEMP_PREFIX)
                }
        except (FileNotFoundError, NotADirectoryError):
            return {}

    def _day_lock(self, table: str, day: str) -> contextlib.AbstractContextManager[None]:
        """The lock of one day of a table: its compaction, its day file and its hour writes."""
        return _exclusive(self._compacted_dir(table) / f"{day}.lock")

    def scan(self, table: str, partition_keys: list[str] | None = None) -> pl.LazyFrame:
        """The rows of ``partition_keys`` (all partitions if None), in the order of the keys,
        each partition's in the order written; a day's compacted copy stands for its hour files
        when it holds exactly the requested hours, as they are now (module docstring)."""
        directory = safe_join(self.root, validate_table(table))
        files = self._partition_files(directory)  # the one listing of the folder
        day_files = self._day_files(directory)
        # The records of the days asked for only (every day's, for the whole table).
        asked = (
            day_files
            if partition_keys is None
            else {d: day_files[d] for k in partition_keys if (d := _day_of(k)) in day_files}
        )
        records = {day: DayRecord.read(path, table=table, day=day) for day, path in asked.items()}
        in_days = {stem: day for day, record in records.items() for stem in record.hours}
        if partition_keys is None:
            keys = sorted(partition_key_from_stem(s) for s in {*files, *in_days})
            if not keys:
                self._refuse_whole(table)
        else:
            keys = list(partition_keys)
        stems = [partition_file_stem(k) for k in keys]
        missing = [
            k
            for k, stem in zip(keys, stems, strict=True)
            if stem not in files and stem not in in_days
        ]
        if missing:
            self._refuse_whole(table)
            raise StorageError(f"{table}: partitions not materialized yet: {', '.join(missing)}")
        if not keys:
            raise StorageError(f"{table}: no partitions under {self.root}")
        if not in_days:
            paths = self._files_to_read(
                table, directory, list(zip(keys, stems, strict=True)), files
            )
            return pl.scan_parquet(paths)
        # Hours in day files are read as their runs of rows; the others as above, in key order.
        pieces: list[pl.LazyFrame] = []
        for in_day, run in itertools.groupby(
            zip(keys, stems, strict=True), key=lambda key_stem: in_days.get(key_stem[1])
        ):
            group = list(run)
            if in_day is None:
                paths = self._files_to_read(table, directory, group, files)
                pieces.append(pl.scan_parquet(paths))
                continue
            spans = records[in_day].hours
            offset, rows = spans[group[0][1]]
            for _, stem in group[1:]:
                if spans[stem][0] == offset + rows:  # the next hour of the file: one slice
                    rows += spans[stem][1]
                    continue
                pieces.append(pl.scan_parquet(day_files[in_day]).slice(offset, rows))
                offset, rows = spans[stem]
            pieces.append(pl.scan_parquet(day_files[in_day]).slice(offset, rows))
        return pl.concat(pieces, how="vertical")

    def _files_to_read(
        self,
        table: str,
        directory: Path,
        keys: list[tuple[str, str]],
        files: dict[str, os.DirEntry[str]],
    ) -> list[Path]:
        """For each run of consecutive (key, stem) of one day, its compacted copy if it holds
        exactly those hours as they are now, else the hour files; in the order of ``keys``."""
        compacted_dir = self._compacted_dir(table)
        try:
            with os.scandir(compacted_dir) as listing:
                compacted = {e.name for e in listing}
        except (FileNotFoundError, NotADirectoryError):
            compacted = set()
        paths: list[Path] = []
        for day, run in itertools.groupby(keys, key=lambda key_stem: _day_of(key_stem[0])):
            # Stems are validated keys (digits and dashes): joined without safe_join's resolve.
            stems = [stem for _, stem in run]
            copy = compacted_dir / f"{day}.parquet"
            if day is None or copy.name not in compacted:
                current = False
            else:
                current = _current(copy, table, day, stems, files)
            if current:
                paths.append(copy)
            else:
                paths.extend(directory / f"{stem}.parquet" for stem in stems)
        return paths

    def compact(self, table: str, partition_keys: Sequence[str]) -> None:
        """Rebuild the compacted copy of each UTC day the hourly ``partition_keys`` touch from
        the hour files that day has now (all of them, not only the keys given), or remove it if
        the day has none; a copy that is current already is left as it is. Daily keys need no
        compaction (module docstring). Hour files that cannot be combined (unreadable, or of
        different schemas) are logged and leave the day without a copy: reads of its hour
        files then meet the problem, as before compaction."""
        days = sorted({day for k in partition_keys if (day := _day_of(validate_partition_key(k)))})
        if not days:
            return
        directory = safe_join(self.root, validate_table(table))
        self._refuse_whole(table)
        for day in days:
            self._compact_day(table, directory, day)

    def _compact_day(self, table: str, directory: Path, day: str) -> None:
        copy = self._compacted_dir(table) / f"{day}.parquet"
        hour_files = [directory / f"{day}-{hour:02d}00.parquet" for hour in _HOURS]
        if not copy.exists() and not any(path.exists() for path in hour_files):
            return  # nothing to build or remove: no lock file for a day never written
        with self._day_lock(table, day):
            if self._day_path(table, day).exists():
                return  # stored by day: its day file is what reads use, nothing to compact
            present: dict[str, FileIdentity] = {}
            for path in hour_files:
                with contextlib.suppress(FileNotFoundError):
                    present[path.stem] = file_identity(path.stat())
            if not present:
                with contextlib.suppress(FileNotFoundError):
                    copy.unlink()
                return
            record = _read_record(copy)
            if record is not None and (record.table, record.day, record.hours) == (
                table,
                day,
                present,
            ):
                return  # current already: compacting twice changes nothing
            with self._lock:
                recent = {path: self._recent[path] for path in hour_files if path in self._recent}
            built = _combine(table, day, hour_files, recent)
            if built is None:
                with contextlib.suppress(FileNotFoundError):
                    copy.unlink()
                return
            frame, record = built
            atomic_write(copy, _write(frame, {COMPACTION_RECORD_KEY: record.to_json()}))

    def sweep(self, *, older_than_s: float = 3600.0) -> int:
        """Remove orphaned temp files, the compacted days' included (``.compacted/`` is under
        the root)."""
        return sweep_temp_files(self.root, older_than_s=older_than_s)

    # -- whole tables --------------------------------------------------------------------------
    def replace_table(self, table: str, frame: pl.DataFrame, *, key: Sequence[str]) -> WriteResult:
        """Replace ``<root>/<table>.parquet`` with ``frame`` sorted by ``key``: temp file, rename.

        The key is checked (no nulls, no duplicates) but not stored: the lake, like its
        partitions, keeps no layout to compare the next frame with."""
        path = self._table_path(table)
        columns = check_table_key(frame, key, table=table)
        self._refuse_partitioned(table)
        # Sorted on write, so reads come back in key order, as PostgreSQL's ORDER BY gives them.
        atomic_write(path, _write(frame.sort(columns)))
        return WriteResult(table, WHOLE_TABLE, frame.height, path.stat().st_size, str(path))

    def read_table(self, table: str) -> pl.DataFrame | None:
        path = self._table_path(table)
        if not path.exists():
            self._refuse_partitioned(table)
            return None
        try:
            return pl.read_parquet(path)
        except pl.exceptions.PolarsError as exc:
            raise StorageError(f"{table} (whole table): unreadable file {path}: {exc}") from None

    def scan_table(self, table: str) -> pl.LazyFrame:
        path = self._table_path(table)
        if not path.exists():
            self._refuse_partitioned(table)
            raise StorageError(f"{table}: whole table never written: no {path}")
        return pl.scan_parquet(path)


def _current(
    copy: Path, table: str, day: str, stems: list[str], files: dict[str, os.DirEntry[str]]
) -> bool:
    """Whether ``copy`` holds exactly the hour files ``stems``, in that order, as they are now."""
    record = _read_record(copy)
    if record is None or (record.table, record.day) != (table, day):
        return False
    if list(record.hours) != stems:  # same hours, same order, no key asked twice
        return False
    try:
        return all(file_identity(files[s].stat()) == record.hours[s] for s in stems)
    except OSError:  # an hour file gone since the listing: scanning it reports it
        return False


def _combine(
    table: str,
    day: str,
    hour_files: list[Path],
    recent: Mapping[Path, tuple[FileIdentity, pl.DataFrame]],
) -> tuple[pl.DataFrame, CompactionRecord] | None:
    """The rows of the day's hour files in hour order, and the record of what was read: each
    file's identity is taken from the descriptor its bytes are read from, so a file replaced
    meanwhile is recorded as the version read. A file this process wrote (``recent``) whose
    identity is still the one it wrote is not read back: its rows are those written, and the
    identity recorded is that version's. None (logged) if they cannot be combined."""
    frames: list[pl.DataFrame] = []
    hours: dict[str, FileIdentity] = {}
    try:
        for path in hour_files:
            known = recent.get(path)
            if known is not None:
                with contextlib.suppress(FileNotFoundError):
                    if file_identity(path.stat()) == known[0]:
                        frames.append(known[1])
                        hours[path.stem] = known[0]
                        continue
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                continue
            with handle:
                identity = file_identity(os.fstat(handle.fileno()))
                data = handle.read()
            frames.append(pl.read_parquet(data))
            hours[path.stem] = identity
        if not frames:
            return None
        frame = pl.concat(frames, how="vertical", rechunk=False)
    except pl.exceptions.PolarsError as exc:
        logger.warning(
            "%s %s: not compacted, its hour files stay what reads use: %s", table, day, exc
        )
        return None
    return frame, CompactionRecord(table, day, hours)
