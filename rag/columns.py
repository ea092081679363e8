"""Passages stored as columns: one UTF-8 blob and one array of fixed-size rows, memory-mapped.

Opening an index used to parse every passage of a JSON Lines file into an object: 8.6 s at
1,000,000 passages, most of opening. Now a passage is made only when it is asked for (a search
returns ten), from its row and its slice of the blob, so opening costs the same at any size.

Files (named by the index's generation tag):

    passages-<tag>.utf8   every passage's text, location and source, one after the other
                          (a source's path once, shared by its passages)
    passages-<tag>.npy    one row per passage, in index order (`ROW` below): its id, the byte
                          ranges of its text, location and source in the blob, and its offsets,
                          position and paragraph in its source
"""
from __future__ import annotations

import mmap
from pathlib import Path
from typing import Iterator, Sequence, overload

import numpy as np

from .types import Passage

# The passage id is 16 hex characters (rag.splitting.passage_id); byte ranges are int64 (a blob
# beyond 2 GiB is 20 million passages); a location range of (-1, -1) is a passage without one.
ROW = np.dtype([
    ("id", "S16"),
    ("text", "<i8", (2,)),
    ("location", "<i8", (2,)),
    ("source", "<i8", (2,)),
    ("start", "<i8"),
    ("end", "<i8"),
    ("position", "<i4"),
    ("paragraph", "<i4"),
])
BLOB_SUFFIX = ".utf8"
ITERATION_BLOCK = 65_536  # rows read per block when iterating: a few MB of columns at a time
ROWS_SUFFIX = ".npy"


class _Passages(Sequence[Passage]):
    """A `Sequence[Passage]` whose passages are made one at a time (`_passage`); a slice is a list."""

    @overload
    def __getitem__(self, i: int) -> Passage: ...

    @overload
    def __getitem__(self, i: slice) -> list[Passage]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._passage(j) for j in range(*i.indices(len(self)))]
        return self._passage(i)

    def _passage(self, i: int) -> Passage:
        raise NotImplementedError


class PassageTable(_Passages):
    """The passages of an index, read from their columns on demand; a `Sequence[Passage]`."""

    def __init__(self, rows: np.ndarray, blob: bytes | mmap.mmap):
        self.rows = rows
        self._blob = blob
        self._sources: dict[tuple[int, int], str] = {}  # decoded once per source

    def __len__(self) -> int:
        return len(self.rows)

    def _passage(self, i: int) -> Passage:
        row = self.rows[i]
        text, location, source = row["text"], row["location"], row["source"]
        return Passage(
            id=row["id"].decode("ascii"),
            source=self._source(int(source[0]), int(source[1])),
            start=int(row["start"]),
            end=int(row["end"]),
            text=self._blob[text[0] : text[1]].decode("utf-8"),
            position=int(row["position"]),
            paragraph=int(row["paragraph"]),
            location=None if location[0] < 0 else self._blob[location[0] : location[1]].decode("utf-8"),
        )

    def __iter__(self) -> Iterator[Passage]:
        # In blocks, each column read at once: walking a million passages (to group them by
        # source, say) costs the objects, not a numpy lookup per field.
        for first in range(0, len(self), ITERATION_BLOCK):
            rows = self.rows[first : first + ITERATION_BLOCK]
            blob = self._blob
            for id_, (t0, t1), (l0, l1), (s0, s1), start, end, position, paragraph in zip(
                rows["id"].tolist(), rows["text"].tolist(), rows["location"].tolist(), rows["source"].tolist(),
                rows["start"].tolist(), rows["end"].tolist(), rows["position"].tolist(), rows["paragraph"].tolist(),
            ):
                yield Passage(id=id_.decode("ascii"), source=self._source(s0, s1), start=start, end=end,
                              text=blob[t0:t1].decode("utf-8"), position=position, paragraph=paragraph,
                              location=None if l0 < 0 else blob[l0:l1].decode("utf-8"))

    def _source(self, start: int, end: int) -> str:
        key = (start, end)
        if key not in self._sources:
            self._sources[key] = self._blob[start:end].decode("utf-8")
        return self._sources[key]

    def ids(self) -> list[str]:
        """Every passage's id, in order (without making the passages)."""
        return [i.decode("ascii") for i in self.rows["id"].tolist()]

    def text(self, i: int) -> str:
        start, end = self.rows["text"][i]
        return self._blob[start:end].decode("utf-8")


class _Builder:
    """Accumulates the blob and the rows of a table being written."""

    def __init__(self) -> None:
        self.parts: list[bytes | memoryview] = []
        self.blocks: list[np.ndarray] = []
        self.offset = 0

    def _put(self, data: bytes | memoryview) -> int:
        self.parts.append(data)
        self.offset += len(data)
        return self.offset - len(data)

    def add(self, passages: Sequence[Passage]) -> None:
        """New passages, encoded from their objects."""
        sources: dict[str, tuple[int, int]] = {}
        text_ranges, location_ranges, source_ranges = [], [], []

        def put(value: str) -> tuple[int, int]:
            data = value.encode("utf-8")
            start = self._put(data)
            return start, start + len(data)

        for passage in passages:
            if passage.source not in sources:
                sources[passage.source] = put(passage.source)
            source_ranges.append(sources[passage.source])
            text_ranges.append(put(passage.text))
            location_ranges.append(put(passage.location) if passage.location is not None else (-1, -1))
        rows = np.zeros(len(passages), dtype=ROW)
        if len(passages):  # column by column: a million rows are assigned in a second
            rows["id"] = [p.id.encode("ascii") for p in passages]
            rows["text"], rows["location"], rows["source"] = text_ranges, location_ranges, source_ranges
            rows["start"] = [p.start for p in passages]
            rows["end"] = [p.end for p in passages]
            rows["position"] = [p.position for p in passages]
            rows["paragraph"] = [p.paragraph for p in passages]
        self.blocks.append(rows)

    def copy(self, table: PassageTable, first: int, last: int) -> None:
        """Rows first..last-1 of `table` as they are: their rows, and the span of the blob that
        holds their strings, moved to where this blob has got to."""
        rows = np.array(table.rows[first:last])
        ranges = np.concatenate([rows["text"], rows["source"], rows["location"]])
        ranges = ranges[ranges[:, 0] >= 0]
        low, high = int(ranges[:, 0].min()), int(ranges[:, 1].max())
        blob = table._blob
        view = memoryview(blob)[low:high] if isinstance(blob, mmap.mmap) else blob[low:high]
        shift = self._put(view) - low
        rows["text"] += shift
        rows["source"] += shift
        present = rows["location"][:, 0] >= 0
        rows["location"][present] += shift
        self.blocks.append(rows)

    def save(self, stem: Path) -> tuple[Path, Path]:
        blob_path, rows_path = stem.with_name(stem.name + BLOB_SUFFIX), stem.with_name(stem.name + ROWS_SUFFIX)
        with open(blob_path, "wb") as blob:
            blob.writelines(self.parts)
        rows = np.concatenate(self.blocks) if self.blocks else np.zeros(0, dtype=ROW)
        np.save(rows_path, rows, allow_pickle=False)
        return blob_path, rows_path


def write(passages: Sequence[Passage], stem: Path) -> tuple[Path, Path]:
    """Write `passages` as `<stem>.utf8` and `<stem>.npy`; returns the two paths (not yet fsynced)."""
    builder = _Builder()
    builder.add(passages)
    return builder.save(stem)


def write_carried(previous: Sequence[Passage], rows: np.ndarray, passages: Sequence[Passage], stem: Path) -> tuple[Path, Path]:
    """Write a table whose row i is `previous[rows[i]]`, or the next of `passages` where rows[i] is -1.

    Runs of consecutive previous rows (a source kept as it was) are copied as rows and bytes,
    without making passages of them: an update of a million-passage index copies ~100 MB.
    """
    assert isinstance(previous, PassageTable)
    builder = _Builder()
    rows = np.asarray(rows, dtype=np.int64)
    fresh = iter(range(len(passages)))
    # Where a run ends: a new passage, or a carried row that does not follow the one before it.
    breaks = np.nonzero((rows[1:] < 0) | (rows[:-1] < 0) | (rows[1:] != rows[:-1] + 1))[0] + 1
    for start, end in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [len(rows)]])):
        if start == end:
            continue
        if rows[start] < 0:
            builder.add([passages[next(fresh)] for _ in range(start, end)])
        else:
            builder.copy(previous, int(rows[start]), int(rows[end - 1]) + 1)
    return builder.save(stem)


def read(stem: Path) -> PassageTable:
    """Open the passages written at `stem`, memory-mapped.

    The files must have been checked to have their full size first (rag.store does).
    """
    path = stem.with_name(stem.name + ROWS_SUFFIX)
    # A plain array over the map: numpy.memmap's own indexing costs more than the row it reads.
    rows = np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)
    if not rows.size:  # nothing to map
        rows = np.load(path, allow_pickle=False)
    if rows.dtype != ROW:
        raise ValueError(f"passage rows of type {rows.dtype}, expected {ROW}")
    with open(stem.with_name(stem.name + BLOB_SUFFIX), "rb") as handle:
        size = handle.seek(0, 2)
        # An empty file cannot be mapped; the map stays valid after the file is closed.
        blob = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    return PassageTable(rows, blob)


def rows_by_source(passages: Sequence[Passage]) -> dict[str, np.ndarray]:
    """Each source's rows, in order (a source's passages are stored together)."""
    if isinstance(passages, PassageTable):
        if not len(passages):
            return {}
        starts = np.asarray(passages.rows["source"][:, 0])
        breaks = np.concatenate([[0], np.nonzero(starts[1:] != starts[:-1])[0] + 1, [len(starts)]])
        out: dict[str, np.ndarray] = {}
        for first, end in zip(breaks[:-1], breaks[1:]):
            source = passages[int(first)].source
            block = np.arange(first, end, dtype=np.int64)
            out[source] = np.concatenate([out[source], block]) if source in out else block
        return out
    if isinstance(passages, Chain):  # each part's, numbered after the parts before it
        chained: dict[str, np.ndarray] = {}
        for start, part in zip(passages.starts, passages.parts):
            for source, rows in rows_by_source(part).items():
                chained[source] = np.concatenate([chained[source], rows + start]) if source in chained else rows + start
        return chained
    grouped: dict[str, list[int]] = {}
    for row, passage in enumerate(passages):
        grouped.setdefault(passage.source, []).append(row)
    return {source: np.asarray(rows, dtype=np.int64) for source, rows in grouped.items()}


class Chain(_Passages):
    """Several tables read as one sequence, the first's passages first (a sharded index's)."""

    def __init__(self, parts: Sequence[Sequence[Passage]]):
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _passage(self, i: int) -> Passage:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"passage {i} of {len(self)}")
        part = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.parts[part][i - int(self.starts[part])]

    def __iter__(self) -> Iterator[Passage]:
        for part in self.parts:
            yield from part
