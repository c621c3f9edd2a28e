"""Bytes in: compression, text encoding, line endings, and the UTF-8 byte stream the parser reads.

Everything here streams: the input is read in pieces (an S3 ``StreamingBody``, an open file, a
``BytesIO``), never as a whole. What detection needs (the first ``SAMPLE_BYTES``) is peeked and put
back in front of the stream, so nothing needs to be seekable.

- **Compression**: gzip by its magic bytes (``1f 8b``) or ``format.compression`` in the spec; other
  archive formats (zip, bzip2, xz, zstd) are named in a clear error.
- **Encoding**: a byte order mark wins (UTF-8 with BOM, UTF-16); else the sample is checked as UTF-8;
  text that is not UTF-8 is read as cp1252 (the Windows superset of Latin-1; its five undefined bytes
  decode as Latin-1). A file detected as UTF-8 that turns out to hold a few invalid bytes further on
  (a mixed-encoding export) has just those bytes decoded as cp1252 and counted in the report, instead
  of failing half-way through a large file. ``format.encoding`` in the spec overrides detection.
  No charset-detection library: the ML layer ships pandas and numpy only, and UTF-8 vs cp1252 covers
  the files this product sees (charset-normalizer would be the upgrade path).
- **Binary junk** (NUL bytes, a high share of control characters) is refused as "not text".
- **Line endings**: LF and CRLF pass through; lone CRs (old Mac files, or mixed) become LF, so that
  one line = one ``\\n`` everywhere downstream (line numbers in quarantine count them as lines).

The parser downstream always reads UTF-8 bytes without BOM.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import re
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from sluice.errors import SourceObjectError, SpecError

SAMPLE_BYTES = 1 << 20  # what detection looks at (decoded): ~10k rows of a typical CSV
READ_BYTES = 1 << 20  # raw read size while streaming
PREVIEW_BYTES = 64 * 1024  # what line-ending detection looks at

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"PK\x03\x04", "zip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_CONTROL = bytes([*range(0, 9), 11, 12, *range(14, 32), 127])  # control bytes that text does not hold
_LONE_CR = re.compile(r"\r(?!\n)")

# -- lenient decoding ------------------------------------------------------------------------------

FALLBACK_ERRORS = "sluice.cp1252-fallback"
_counter = threading.local()


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: bytes invalid in the file's encoding are read as cp1252 (else Latin-1)."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    _counter.bytes = getattr(_counter, "bytes", 0) + len(bad)
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in bad), exc.end


codecs.register_error(FALLBACK_ERRORS, _cp1252_fallback)


def _fallback_count() -> int:
    return getattr(_counter, "bytes", 0)


# -- stream helpers --------------------------------------------------------------------------------


class Serial:
    """Runs calls one after another on one worker thread, at most one in flight (``submit`` waits for
    the previous call). Hashing and file writes release the GIL, so they overlap with parsing."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._last: Future[Any] | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self.wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="sluice-ingest")
        self._last = self._pool.submit(fn, *args)

    def wait(self) -> None:
        if self._last is not None:
            last, self._last = self._last, None
            last.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


class HashingReader:
    """A binary stream that also hashes (sha256, on a worker thread) and counts what is read, and
    times the reads."""

    def __init__(self, raw: Any):
        self.raw = raw
        self._sha = hashlib.sha256()
        self._hasher = Serial()
        self.size = 0
        self.read_s = 0.0

    def read(self, n: int = -1) -> bytes:
        t0 = time.perf_counter()
        data = self.raw.read() if n is None or n < 0 else self.raw.read(n)
        self.read_s += time.perf_counter() - t0
        if data:
            self._hasher.submit(self._sha.update, data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read to the end (the hash covers the whole object even if parsing stopped early)."""
        while self.read(READ_BYTES):
            pass

    def hexdigest(self) -> str:
        self._hasher.close()
        return self._sha.hexdigest()

    def close(self) -> None:
        self._hasher.close()

    def readable(self) -> bool:
        return True


class Prefixed:
    """``prefix`` then the rest of ``stream``: detection peeks at the start without seeking."""

    def __init__(self, prefix: bytes, stream: Any):
        self._prefix = prefix
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            if n is None or n < 0:
                data, self._prefix = self._prefix + self._stream.read(), b""
                return data
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        return self._stream.read() if n is None or n < 0 else self._stream.read(n)

    def readable(self) -> bool:
        return True


class _Gunzip:
    """``gzip.GzipFile`` whose corruption errors become a SourceObjectError naming the problem."""

    def __init__(self, stream: Any):
        self._gz = gzip.GzipFile(fileobj=stream, mode="rb")

    def read(self, n: int = -1) -> bytes:
        try:
            return self._gz.read(n)
        except (OSError, EOFError, zlib.error) as exc:
            raise SourceObjectError(f"the gzip stream is corrupt or truncated: {exc}") from exc


def read_up_to(stream: Any, n: int) -> bytes:
    """Up to ``n`` bytes: loops because a decompressor or a socket may return short reads."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        piece = stream.read(n - got)
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


# -- detection -------------------------------------------------------------------------------------


def detect_compression(head: bytes) -> str:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "none"


def detect_encoding(sample: bytes, at_eof: bool) -> tuple[str, str]:
    """(encoding, why) for the start of a file. Raises SourceObjectError for binary content."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "UTF-8 byte order mark"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "UTF-16 byte order mark"
    if b"\x00" in sample:
        raise SourceObjectError("the file is not text (it contains NUL bytes); expected a CSV file")
    controls = len(sample) - len(sample.translate(None, _CONTROL))
    if controls > max(8, len(sample) // 100):
        raise SourceObjectError(
            f"the file is not text ({controls} control bytes in its first {len(sample)} bytes); "
            "expected a CSV file"
        )
    try:
        codecs.utf_8_decode(sample, "strict", at_eof)
        return "utf-8", "valid UTF-8"
    except UnicodeDecodeError:
        pass
    before = _fallback_count()
    text, _ = codecs.utf_8_decode(sample, FALLBACK_ERRORS, at_eof)
    invalid = _fallback_count() - before
    multibyte = sum(1 for ch in text if ord(ch) > 0x7F) - invalid
    if multibyte >= 4 * invalid:
        return "utf-8", f"UTF-8 ({invalid} invalid byte(s) in the first {len(sample)} read as cp1252)"
    return "cp1252", "not UTF-8: read as cp1252 (Windows Latin-1)"


def detect_line_endings(text: str) -> str:
    crlf = text.count("\r\n")
    cr = text.count("\r") - crlf
    lf = text.count("\n") - crlf
    kinds = [name for name, count in (("LF", lf), ("CRLF", crlf), ("CR", cr)) if count]
    if not kinds:
        return "none"
    return kinds[0] if len(kinds) == 1 else "mixed"


class Utf8Stream:
    """Decodes ``stream`` from ``encoding`` (invalid bytes via the cp1252 fallback) and serves UTF-8.

    UTF-8 input passes through untouched when it validates (an ASCII check, else a strict decode of
    the piece); only pieces holding invalid bytes, and other encodings, are decoded and re-encoded.
    ``lone_cr``: turn CRs not followed by LF into LF (a trailing CR waits for the next piece).
    """

    def __init__(self, stream: Any, encoding: str, lone_cr: bool):
        self._stream = stream
        self._passthrough = codecs.lookup(encoding).name in ("utf-8", "utf-8-sig") and not lone_cr
        self._bom = codecs.lookup(encoding).name == "utf-8-sig"
        self._decoder = codecs.getincrementaldecoder(encoding)(errors=FALLBACK_ERRORS)
        self._lone_cr = lone_cr
        self._held = ""
        self._tail = b""  # an incomplete UTF-8 sequence at the end of the last piece
        self._eof = False
        self.fallback_bytes = 0

    def _pass(self, raw: bytes) -> bytes:
        data = self._tail + raw
        self._tail = b""
        if self._bom:
            if len(data) < 3 and raw:
                self._tail = data
                return b""
            if data.startswith(codecs.BOM_UTF8):
                data = data[3:]
            self._bom = False
        if data.isascii():
            return data
        if raw:  # keep a trailing incomplete sequence for the next piece
            cut = len(data)
            for back in range(1, min(4, len(data)) + 1):
                byte = data[-back]
                if byte < 0x80:
                    break
                if byte >= 0xC0:  # a lead byte: complete if the sequence it starts fits
                    need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
                    if need > back:
                        cut = len(data) - back
                    break
            data, self._tail = data[:cut], data[cut:]
        try:
            data.decode("utf-8")
            return data
        except UnicodeDecodeError:
            before = _fallback_count()
            text = data.decode("utf-8", errors=FALLBACK_ERRORS)
            self.fallback_bytes += _fallback_count() - before
            return text.encode("utf-8")

    def read(self, n: int = -1) -> bytes:
        while True:
            if self._eof:
                return b""
            raw = self._stream.read(READ_BYTES if n is None or n < 0 else max(n, 1 << 16))
            if not raw:
                self._eof = True
            if self._passthrough:
                data = self._pass(raw)
                if data or self._eof:
                    return data
                continue
            before = _fallback_count()
            text = self._decoder.decode(raw, final=not raw)
            self.fallback_bytes += _fallback_count() - before
            if self._lone_cr:
                text = self._held + text
                self._held = ""
                if text.endswith("\r") and not self._eof:
                    text, self._held = text[:-1], "\r"
                text = _LONE_CR.sub("\n", text)
            if text or self._eof:
                return text.encode("utf-8")


@dataclass
class Source:
    """An opened input: what was detected, a UTF-8 sample, and the stream to read from the start."""

    stream: Utf8Stream  # UTF-8 bytes from the very start of the (decompressed) file
    sample: bytes  # the first SAMPLE_BYTES of ``stream`` (already read; ``prefixed`` replays them)
    at_eof: bool  # the sample is the whole file
    compression: str
    encoding: str
    line_endings: str
    decided_by: dict[str, str] = field(default_factory=dict)
    decompressed: Any = None  # the byte stream before decoding (for its size)

    def prefixed(self) -> Prefixed:
        return Prefixed(self.sample, self.stream)


def open_source(raw: BinaryIO | Any, compression: str | None = None, encoding: str | None = None) -> Source:
    """Detect compression, encoding and line endings of ``raw`` and return a Source to read it.

    ``compression`` ("gzip"/"none") and ``encoding`` override detection (dataset spec ``format``).
    Raises SourceObjectError for an empty, binary or unsupported-archive input.
    """
    head = read_up_to(raw, 8)
    detected = detect_compression(head)
    decided_by: dict[str, str] = {}
    stream: Any = Prefixed(head, raw)
    if compression is None:
        if detected in ("zip", "bzip2", "xz", "zstd"):
            raise SourceObjectError(
                f"the file is not text: it is a {detected} archive; upload a CSV file, or a "
                "gzip-compressed one (.csv.gz)"
            )
        compression = detected
        decided_by["compression"] = "magic bytes" if detected == "gzip" else "no compression magic bytes"
    else:
        decided_by["compression"] = "spec format.compression"
    if compression == "gzip":
        stream = _Gunzip(stream)

    raw_sample = read_up_to(stream, SAMPLE_BYTES)
    if not raw_sample.strip():
        raise SourceObjectError(
            "the file is empty (0 bytes)" if not raw_sample else "the file is empty (only whitespace)"
        )
    if encoding is None:
        encoding, decided_by["encoding"] = detect_encoding(raw_sample, len(raw_sample) < SAMPLE_BYTES)
    else:
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise SpecError(f"format.encoding: unknown encoding {encoding!r}") from exc
        decided_by["encoding"] = "spec format.encoding"
    preview = raw_sample[:PREVIEW_BYTES].decode(encoding, errors=FALLBACK_ERRORS)
    line_endings = detect_line_endings(preview)
    utf8 = Utf8Stream(Prefixed(raw_sample, stream), encoding, lone_cr=line_endings in ("CR", "mixed"))
    sample = read_up_to(utf8, SAMPLE_BYTES)  # a short read means the end of the file
    if not sample.strip():
        raise SourceObjectError("the file is empty (only whitespace)")
    return Source(
        stream=utf8,
        sample=sample,
        at_eof=len(sample) < SAMPLE_BYTES,
        compression=compression,
        encoding=encoding,
        line_endings=line_endings,
        decided_by=decided_by,
        decompressed=stream,
    )


def decode(body: bytes) -> tuple[str, str]:
    """Bytes -> (text, encoding) with the same detection as streaming ingest (for small inputs)."""
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return body.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise SourceObjectError(
                f"file starts with a UTF-16 byte order mark but is not UTF-16: {exc}"
            ) from exc
    encoding, _ = detect_encoding(body[:SAMPLE_BYTES], at_eof=len(body) <= SAMPLE_BYTES)
    return body.decode(encoding, errors=FALLBACK_ERRORS), encoding
