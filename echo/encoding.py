"""Request bodies with a Content-Encoding: decoded as they arrive, with the decoded size bounded (pure).

mendhak gunzips a ``Content-Encoding: gzip`` body before filling ``body`` and ``json`` (zlib's
gunzipSync, no limit; a body that does not decode throws outside Express and ends the process).
Here, as Express's body-parser does for its own parsers:

- ``gzip`` (and its alias ``x-gzip``) and ``deflate`` are decoded, several codings in the order
  listed (``gzip, deflate`` was gzipped first), ``identity`` is nothing to do;
- any other coding (``br``, ``zstd``, ``compress``) is refused: ``UnsupportedEncoding`` (415);
- a body that does not decode, is cut short, or has trailing bytes after the stream: ``DecodeError``
  (400);
- the *decoded* size counts against the limit: output is produced ``CHUNK`` bytes at a time and
  decoding stops as soon as the total crosses the limit (``DecodedTooLarge``, 413), so a
  decompression bomb costs at most the limit in memory and the time to inflate that much.

``deflate`` is the zlib format (RFC 9110 §8.4.1.2); raw deflate without the zlib header, which some
clients send, is accepted too. Concatenated gzip members are decoded one after the other, as zlib's
gunzip does.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

CHUNK = 64 * 1024
MAX_CODINGS = 4
SUPPORTED = ("gzip", "deflate")
_ALIASES = {"x-gzip": "gzip", "gzip": "gzip", "deflate": "deflate"}
_GZIP_MAGIC = b"\x1f\x8b"


class UnsupportedEncoding(Exception):
    """A content coding this server does not decode (answer 415 with Accept-Encoding)."""


class DecodeError(Exception):
    """The body does not decode with the coding it claims (answer 400)."""


class DecodedTooLarge(Exception):
    """The decoded body crossed the limit (answer 413)."""


def parse_content_encoding(value: str) -> tuple[str, ...]:
    """``Content-Encoding`` → the codings to undo, in the order they were applied (identity dropped)."""
    codings: list[str] = []
    for item in value.split(","):
        name = item.strip().lower()
        if not name or name == "identity":
            continue
        coding = _ALIASES.get(name)
        if coding is None:
            shown = name if len(name) <= 32 else name[:32] + "..."
            raise UnsupportedEncoding(f"unsupported Content-Encoding {shown!r} (supported: gzip, deflate)")
        codings.append(coding)
    if len(codings) > MAX_CODINGS:
        raise UnsupportedEncoding(f"more than {MAX_CODINGS} content codings")
    return tuple(codings)


class _Stage:
    """Undo one coding; ``feed`` passes every output chunk (at most CHUNK bytes) to ``emit``."""

    def __init__(self, coding: str, emit: Callable[[bytes], None]) -> None:
        self.coding = coding
        self._emit = emit
        self._inflater: zlib._Decompress | None = None
        self._pending = b""  # bytes held until the next stream's header can be recognised
        self._done = False  # a complete stream was decoded and nothing has started since

    def _start(self, data: bytes) -> bytes | None:
        """Begin a stream once its first two bytes are known; returns the data to inflate."""
        data = self._pending + data
        if len(data) < 2:
            self._pending = data
            return None
        self._pending = b""
        if self.coding == "gzip":
            if data[:2] != _GZIP_MAGIC:
                what = "trailing bytes after the gzip stream" if self._done else "not gzip data"
                raise DecodeError(what)
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        else:
            if self._done:
                raise DecodeError("trailing bytes after the deflate stream")
            first, second = data[0], data[1]
            zlib_header = first & 0x0F == 8 and first >> 4 <= 7 and ((first << 8) | second) % 31 == 0
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        self._done = False
        return data

    def feed(self, data: bytes) -> None:
        while data:
            if self._inflater is None:
                started = self._start(data)
                if started is None:
                    return
                data = started
            inflater = self._inflater
            assert inflater is not None
            while True:
                try:
                    out = inflater.decompress(data, CHUNK)
                except zlib.error as exc:
                    raise DecodeError(f"{self.coding} data does not decode: {exc}") from None
                if out:
                    self._emit(out)
                data = inflater.unconsumed_tail
                if inflater.eof or (not data and len(out) < CHUNK):
                    break
            if inflater.eof:
                self._inflater = None
                self._done = True
                data = inflater.unused_data
            else:
                return

    def finish(self) -> None:
        if self._inflater is not None or self._pending or not self._done:
            raise DecodeError(f"{self.coding} data is cut short")


class BodyDecoder:
    """Undo ``codings`` on a body fed in pieces; the decoded bytes collect in ``chunks``."""

    def __init__(
        self, codings: tuple[str, ...], limit: int, on_bytes: Callable[[int], None] | None = None
    ) -> None:
        self.limit = limit
        self.size = 0
        self.chunks: list[bytes] = []
        self._on_bytes = on_bytes
        self._stages: list[_Stage] = []
        emit: Callable[[bytes], None] = self._collect
        for coding in codings:  # the last coding applied is undone first
            stage = _Stage(coding, emit)
            self._stages.append(stage)
            emit = stage.feed
        self._first = emit
        self._stages.reverse()

    def _collect(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise DecodedTooLarge(f"decoded body larger than {self.limit} bytes")
        if self._on_bytes is not None:
            self._on_bytes(len(data))
        self.chunks.append(data)

    def feed(self, data: bytes) -> None:
        self._first(data)

    def finish(self) -> bytes:
        for stage in self._stages:
            stage.finish()
        return b"".join(self.chunks)
