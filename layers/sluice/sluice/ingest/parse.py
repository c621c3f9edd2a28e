"""Records out of UTF-8 bytes: blocks of whole records, each parsed by pandas' C parser.

**Blocks.** ``BlockReader`` cuts the stream into blocks of about ``target_bytes`` (the chunk size in
rows times the sample's bytes per record), always after a newline that is outside quotes (an even
number of quote characters before it), so a block holds whole records and memory is bounded by the
block size, not the file size (the last block may hold up to an eighth more, so that the file does not
end with a runt block). When no such newline comes for four times the target (a stray quote
inside an unquoted field makes the count odd), the csv module finds where its record really ends;
only a single field longer than 16 MB would make a cut land inside it (then reported as a warning).

**Fast path.** ``pandas.read_csv`` (C engine, every column as ``category`` so that each distinct raw
string is materialised once, ``na_filter=False``, ``skip_blank_lines=False``) with one spare column
beyond the header's width. A first row of ``\x01`` fields, dropped after parsing, keeps pandas from
converting all-numeric or all-boolean categories (the raw strings must survive: ``007`` stays
``007`` in a string column). Source line numbers stay exact without tracking every record: when no
quoted field of the block contains a newline (checked by walking its quote pairs, or with numpy when
there are many), record ``i`` of the block is physical line ``first_line + i``; otherwise the record
starts are computed from the positions of newlines and quotes (numpy). The raw text of a record is
cut from the block only for the rows that are quarantined. Ragged rows: a field in the spare column
means too many fields; a row whose last field is empty is re-counted exactly (too few fields). More
fields than the spare column holds make pandas raise (or warn): that block, and any block whose row
count does not match the record count, goes to the exact path.

**Exact path.** The ``csv`` module with a line tracker (the engine before this one): multi-line
records, stray quotes, unterminated quotes at the end of a truncated file. Whitespace-aligned files
with inferred column spans are sliced per line.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sluice.ingest.dialect import WHITESPACE, Dialect

_MANY_QUOTES = 10_000  # above this many quoted fields in a block, locate quoted newlines with numpy
_SENTINEL = "\x01"
MAX_READ = 16 << 20  # bytes asked from the stream at once


def count_newlines(data: bytes | bytearray) -> int:
    """``data.count(b"\\n")``, with numpy (several times faster on megabytes), a window at a time (a
    comparison mask the size of the block would be fresh memory, page-faulted in, every block)."""
    view = np.frombuffer(data, dtype=np.uint8)
    step = 1 << 18
    return sum(int(np.count_nonzero(view[i : i + step] == 10)) for i in range(0, len(view), step))


@dataclass
class Block:
    data: bytes | bytearray
    first_line: int  # physical line number of the block's first byte
    final: bool
    newlines: int = -1  # count of b"\n" in data (-1: not counted yet)

    def newline_count(self) -> int:
        if self.newlines < 0:
            self.newlines = count_newlines(self.data)
        return self.newlines


def _odd_quotes(buf: bytes, pos: int, quote: bytes) -> bool:
    """Is ``buf[pos]`` inside a quoted field (an odd number of quotes before it)? Walks the quote
    pairs with ``find`` (fast when quotes are few); counts when there are many."""
    start = 0
    for _ in range(_MANY_QUOTES):
        a = buf.find(quote, start, pos)
        if a < 0:
            return False
        b = buf.find(quote, a + 1, pos)
        if b < 0:
            return True
        start = b + 1
    return buf.count(quote, 0, pos) % 2 == 1


def _cut(buf: bytes, target: int, quote: bytes, force: bool) -> int:
    """End of the first record boundary at or after ``target`` (-1: none yet)."""
    pos = buf.find(b"\n", max(target - 1, 0))
    if pos < 0:
        return -1
    if force or not quote or not _odd_quotes(buf, pos, quote):
        return pos + 1
    count = 1
    while count % 2:
        nxt = buf.find(b"\n", pos + 1)
        if nxt < 0:
            return -1
        count += buf.count(quote, pos, nxt)
        pos = nxt
    return pos + 1


def complete_records(buf: bytes, quote: bytes) -> int:
    """Length of the longest prefix of ``buf`` made of whole records (0: none)."""
    if not quote or quote not in buf:
        return buf.rfind(b"\n") + 1
    arr = np.frombuffer(buf, dtype=np.uint8)
    nl = np.flatnonzero(arr == 10)
    even = nl[(np.searchsorted(np.flatnonzero(arr == quote[0]), nl) & 1) == 0]
    return int(even[-1]) + 1 if len(even) else 0


def count_records(data: bytes, quote: bytes) -> int:
    """Records in ``data`` (whole records; the last may lack its newline)."""
    if quote and _quoted_newline(data, quote):
        return len(_multiline_records(data, quote)[0])
    return count_newlines(data) + (0 if not data or data.endswith(b"\n") else 1)


def _csv_cut(buf: bytes, target: int, dialect: Dialect) -> int:
    """End of the first record ending at or after ``target`` as the csv module reads ``buf`` (-1: none).

    Used when quote parity finds no boundary (a stray quote inside an unquoted field, which the
    parsers take literally): the csv module knows where its records really end."""
    if dialect.delimiter == WHITESPACE:
        return -1
    consumed = 0

    def feed() -> Iterator[str]:
        nonlocal consumed
        for line in io.BytesIO(buf):
            if not line.endswith(b"\n"):
                return
            consumed += len(line)
            yield line.decode("utf-8", errors="replace")

    for _ in dialect.csv_reader(feed()):
        if consumed >= target:
            return consumed
    return -1


class BlockReader:
    """Blocks of whole records from a UTF-8 byte stream, starting with ``prefix``."""

    def __init__(
        self, stream: Any, prefix: bytes, first_line: int, target_bytes: int, quotechar: str, dialect: Dialect
    ):
        self.stream = stream
        self.prefix = prefix
        self.first_line = first_line
        self.target = max(1, target_bytes)
        self.quote = quotechar.encode()
        self.dialect = dialect
        self.csv_cuts = 0  # boundaries found by the csv module (quote parity found none)
        self.forced_cuts = 0  # boundaries placed at a newline without knowing (no record ended)

    def __iter__(self) -> Iterator[Block]:
        # A bytearray that reads are appended to and that is cut in place: each byte is copied once
        # on its way into a block (joining pieces and slicing blocks off bytes copied it thrice).
        buf, line, eof = bytearray(self.prefix), self.first_line, False
        self.prefix = b""  # the blocks own it from now on
        # read an eighth of a block beyond the target before cutting: a file ending within it becomes
        # one last block rather than a runt (one more parse and chunk for a few rows)
        want = self.target + self.target // 8
        while True:
            cut = -1
            while not eof:
                if len(buf) >= want:
                    cut = _cut(buf, self.target, self.quote, False)
                    if cut <= 0 and len(buf) >= 4 * self.target and len(buf) >= 1 << 16:
                        # no balanced quotes for a long stretch (a stray quote?): ask the csv module
                        cut = _csv_cut(buf, self.target, self.dialect)
                        self.csv_cuts += cut > 0
                    if cut <= 0 and len(buf) > max(16 * self.target, MAX_READ):
                        cut = _cut(buf, self.target, self.quote, True)  # a field of 16 MB? cut anyway
                        self.forced_cuts += cut > 0
                    if cut > 0:
                        break
                piece = self.stream.read(min(max(want - len(buf), 1 << 16), MAX_READ))
                if piece:
                    buf = bytearray().join((buf, piece))  # one allocation of the exact size
                else:
                    eof = True
            if cut <= 0:
                if buf:
                    yield Block(buf, line, True)
                return
            rest = buf[cut:]
            del buf[cut:]
            block = Block(buf, line, False)
            buf = rest
            yield block
            line += block.newline_count()


class ParseAhead:
    """Reads and parses ``blocks`` one block ahead of the caller, on one worker thread (pandas
    tokenises without holding the GIL, so the next block is parsed while the caller handles this
    one). Started at once: the first block is already being parsed when the constructor returns."""

    def __init__(self, blocks: Iterator[Block], dialect: Dialect, width: int):
        self._blocks = blocks
        self._dialect = dialect
        self._width = width
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sluice-parse")
        self._next: Future[Records | None] = self._pool.submit(self._parse_next)

    def _parse_next(self) -> Records | None:
        block = next(self._blocks, None)
        return None if block is None else parse_block(block, self._dialect, self._width)

    def __iter__(self) -> Iterator[Records]:
        """The parsed blocks in order; two at most in memory (the caller's and the next)."""
        while True:
            records = self._next.result()
            if records is None:
                return
            self._next = self._pool.submit(self._parse_next)
            yield records
            del records

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# -- records ---------------------------------------------------------------------------------------


@dataclass
class Records:
    """The records of one block, column by column as (codes, distinct raw strings)."""

    n: int
    columns: list[tuple[np.ndarray, list[str]]]  # one per source column (the header's width)
    lines: np.ndarray  # first physical line of each record
    too_few: np.ndarray
    too_many: np.ndarray
    engine: str  # "pandas" | "csv" | "fixed-width"
    raw_of: Callable[[int], str]
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # more row-level reason -> mask

    def raw(self, i: int) -> str:
        return self.raw_of(i)


def _factorized(values: list[str]) -> tuple[np.ndarray, list[str]]:
    codes, uniques = pd.factorize(np.array(values, dtype=object))
    return codes, [str(u) for u in uniques]


def _line_raw(data: bytes, starts: np.ndarray | None, ends: np.ndarray | None) -> Callable[[int], str]:
    """Raw text of record ``i`` (its physical lines, without the final line terminator)."""
    cache: dict[str, list[bytes]] = {}

    def raw(i: int) -> str:
        if "lines" not in cache:
            cache["lines"] = data.split(b"\n")
        lines = cache["lines"]
        text = lines[i] if starts is None or ends is None else b"\n".join(lines[starts[i] : ends[i] + 1])
        return text.decode("utf-8", errors="replace").rstrip("\r\n")

    return raw


def _quoted_newline(data: bytes, quote: bytes) -> bool:
    """Does a quoted field of the block contain a newline? (Walks quote pairs; numpy for many.)"""
    pos = 0
    for _ in range(_MANY_QUOTES):
        a = data.find(quote, pos)
        if a < 0:
            return False
        b = data.find(quote, a + 1)
        if b < 0 or data.find(b"\n", a, b) >= 0:
            return True
        pos = b + 1
    return True  # many quoted fields: the numpy path finds the records exactly


def _multiline_records(data: bytes, quote: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) physical line index (0-based, in the block) of each record, quotes considered."""
    arr = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(arr == 10)
    quotes = np.flatnonzero(arr == quote[0])
    outside = (np.searchsorted(quotes, nl) & 1) == 0
    ends = np.flatnonzero(outside)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    nxt = int(ends[-1]) + 1 if len(ends) else 0
    if nxt < len(nl) or not data.endswith(b"\n"):
        starts = np.append(starts, nxt)
        ends = np.append(ends, len(nl))
    return starts, ends.astype(np.int64)


def _field_count(raw: str, dialect: Dialect) -> int:
    if dialect.delimiter == WHITESPACE:
        return len(dialect.split_line(raw))
    if dialect.quotechar not in raw:
        return raw.count(dialect.delimiter) + 1
    return len(next(dialect.csv_reader([raw]), []))


def parse_block(block: Block, dialect: Dialect, width: int) -> Records:
    if dialect.spans:
        return _fixed_width(block, dialect, width)
    try:
        return _pandas(block, dialect, width)
    except _Fallback:
        return _csv_module(block, dialect, width)


def _open_quote(raw: str, dialect: Dialect) -> bool:
    """Does the record end inside a quoted field? (csv module quoting rules.)"""
    inside = False
    at_start = True
    prev_quote = False
    for ch in raw:
        if inside:
            if ch == dialect.quotechar:
                inside, prev_quote = False, True
                continue
        elif ch == dialect.quotechar and (at_start or prev_quote):
            inside = True
        at_start = ch == dialect.delimiter
        prev_quote = False
    return inside


class _Fallback(Exception):
    pass


class _Concatenated(io.BufferedIOBase):
    """A binary stream over some byte strings end to end, without joining them: the parser reads it
    piece by piece (a joined copy, or ``BytesIO``, would hold the block twice)."""

    def __init__(self, parts: tuple[bytes, ...]):
        self._parts = [memoryview(p) for p in parts]
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        while self._parts:
            part = self._parts[0]
            if self._pos < len(part):
                end = len(part) if size is None or size < 0 else min(len(part), self._pos + size)
                piece = bytes(part[self._pos : end])
                self._pos = end
                return piece
            self._parts.pop(0).release()
            self._pos = 0
        return b""

    read1 = read


def _pandas(block: Block, dialect: Dialect, width: int) -> Records:
    data = block.data
    quote = dialect.quotechar.encode()
    if _quoted_newline(data, quote):
        starts, ends = _multiline_records(data, quote)
        n = len(starts)
        lines = block.first_line + starts
    else:
        starts = ends = None
        n = block.newline_count() + (0 if data.endswith(b"\n") else 1)
        lines = block.first_line + np.arange(n, dtype=np.int64)
    sep = r"\s+" if dialect.delimiter == WHITESPACE else dialect.delimiter
    # A first row of "\x01" fields keeps pandas from turning the categories of an all-numeric or
    # all-boolean column into numbers or booleans (the raw strings must survive); it is dropped below.
    sentinel = ((" " if sep == r"\s+" else sep).join([_SENTINEL] * (width + 1)) + "\n").encode()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(
                _Concatenated((sentinel, data)),
                sep=sep,
                header=None,
                names=list(range(width + 1)),
                index_col=False,
                dtype="category",
                na_filter=False,
                skip_blank_lines=False,
                quotechar=dialect.quotechar,
                doublequote=True,
                engine="c",
                low_memory=False,
                encoding="utf-8",
            )
    except (pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError, ValueError) as exc:
        raise _Fallback(str(exc)) from exc
    if len(df) != n + 1:
        raise _Fallback(f"{len(df) - 1} rows parsed, {n} records counted")
    columns: list[tuple[np.ndarray, list[str]]] = []
    for i in range(width + 1):
        cat = df[i].array
        categories = cat.categories.tolist()
        codes = np.asarray(cat.codes)
        if codes[0] < 0 or categories[codes[0]] != _SENTINEL or not isinstance(categories[-1], str):
            raise _Fallback(f"column {i}: categories were not kept as strings")
        # No row refers to the sentinel's category any more. Rather than removing it (renumbering
        # every code after it), it takes the value of a neighbour: the categories stay sorted, and no
        # value appears that no row has (an unused empty value would look like a null).
        sentinel = int(codes[0])
        categories[sentinel] = categories[sentinel - 1 if sentinel else 1] if len(categories) > 1 else ""
        columns.append((codes[1:], categories))
    spare_codes, spare_values = columns.pop()
    spare_blank = np.fromiter((not v.strip() for v in spare_values), dtype=bool, count=len(spare_values))
    too_many = ~spare_blank[spare_codes]
    raw = _line_raw(data, starts, ends)
    last_codes, last_values = columns[-1] if columns else (np.zeros(n, dtype=np.int8), [""])
    last_empty = np.fromiter((v == "" for v in last_values), dtype=bool, count=len(last_values))
    too_few = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(last_empty[last_codes] & spare_blank[spare_codes]):
        too_few[i] = _field_count(raw(int(i)), dialect) < width
    return Records(n, columns, lines, too_few, too_many, "pandas", raw)


def _csv_module(block: Block, dialect: Dialect, width: int) -> Records:
    text = block.data.decode("utf-8", errors="replace")
    rows: list[list[str]] = []
    lines: list[int] = []
    raws: list[str] = []
    if dialect.delimiter == WHITESPACE:
        physical = text.split("\n")
        if physical and physical[-1] == "":
            physical.pop()
        for i, line in enumerate(physical):
            rows.append(dialect.split_line(line))
            lines.append(block.first_line + i)
            raws.append(line.rstrip("\r\n"))
    else:
        source = io.StringIO(text, newline="")
        pending: list[str] = []
        consumed = 0

        def feed() -> Iterator[str]:
            nonlocal consumed
            for line in source:
                consumed += 1
                pending.append(line)
                yield line

        for fields in dialect.csv_reader(feed()):
            first = block.first_line + consumed - len(pending)
            rows.append(fields)
            lines.append(first)
            raws.append("".join(pending).rstrip("\r\n"))
            pending.clear()
    n = len(rows)
    extra: dict[str, np.ndarray] = {}
    if block.final and raws and dialect.quotechar in raws[-1] and _open_quote(raws[-1], dialect):
        extra["row:unterminated_quote"] = np.arange(n) == n - 1  # the file ends inside a quoted field
    too_many = np.fromiter(
        (len(r) > width and any(f.strip() for f in r[width:]) for r in rows), dtype=bool, count=n
    )
    too_few = np.fromiter((len(r) < width for r in rows), dtype=bool, count=n)
    columns = [_factorized([r[i] if i < len(r) else "" for r in rows]) for i in range(width)]
    return Records(
        n, columns, np.asarray(lines, dtype=np.int64), too_few, too_many, "csv", raws.__getitem__, extra
    )


def _fixed_width(block: Block, dialect: Dialect, width: int) -> Records:
    text = block.data.decode("utf-8", errors="replace")
    physical = text.split("\n")
    if physical and physical[-1] == "":
        physical.pop()
    physical = [line.rstrip("\r") for line in physical]
    n = len(physical)
    assert dialect.spans is not None
    columns = [_factorized([line[a:b] for line in physical]) for a, b in dialect.spans[:width]]
    lines = block.first_line + np.arange(n, dtype=np.int64)
    none = np.zeros(n, dtype=bool)
    return Records(n, columns, lines, none, none.copy(), "fixed-width", physical.__getitem__)
