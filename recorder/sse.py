"""Incremental, sans-IO Server-Sent Events parser (WHATWG HTML §9.2.5-9.2.6)."""

# Design notes: the rules this module keeps, and why.
#
# - Sans-IO. `feed(chunk)` returns the items that chunk completed, and `feed(b"")` ends
#   the stream. No sockets, no clock: the caller stamps items with receive times (h11).
# - Chunking never changes the result. Any split of a stream, down to single bytes,
#   yields the same items with the same offsets. The tests check every split point.
# - Split bytes, decode whole lines. CR, LF and ":" are ASCII and never occur inside a
#   UTF-8 sequence, so splitting before decoding gives the spec's result, and a
#   character split across chunks is decoded in one piece. Decoding uses
#   errors="replace", like the spec's UTF-8 decode.
# - Lines end at CRLF, lone LF or lone CR. A line whose CR is the last byte seen so far
#   is held until the next byte (or the end of the stream) shows whether an LF follows.
#   Otherwise a CRLF split across chunks would count an extra empty line and dispatch
#   early, and `end` offsets would miss the LF.
# - One UTF-8 BOM is stripped at the very start of the stream, even when it is split
#   across chunks, and never later. Offsets count bytes after it.
# - Field rules are the spec's, names case-sensitive. Comments and unknown fields never
#   dispatch. An `id` containing NUL is ignored and an empty `id` resets the cursor to
#   "". `retry` counts only when it is all ASCII digits. The last event id persists
#   across events. A block without `data` fires nothing (SseControl reports one that
#   set id or retry). An unfinished block at the end of the stream is discarded
#   (SseIncomplete reports its bytes). Comments are reported: heartbeats are comments.
# - Bounded memory. A partial line longer than `max_line_bytes` is dropped as its bytes
#   arrive and reported as SseOversize when it ends; parsing resumes with the next line.
#   Buffered bytes stay under the bound plus one chunk.
# - Linear time. Each chunk is split in C by `bytes.splitlines`, which breaks at CR, LF
#   and CRLF only (unlike `str.splitlines`). While a long line is incomplete, only each
#   new chunk is searched for a line ending and its bytes are appended to a bytearray,
#   so a 10 MB line arriving in 64 KiB chunks is never re-scanned or re-copied.

from __future__ import annotations

from recorder.model import (
    SseComment,
    SseControl,
    SseEvent,
    SseIncomplete,
    SseItem,
    SseOversize,
)

__all__ = ["SseError", "SseParser"]

_BOM = b"\xef\xbb\xbf"
_CR = 0x0D
_LF = 0x0A
_LINE_ENDING_BYTES = b"\r\n"


class SseError(Exception):
    """The parser was used out of order (fed after the end of the stream)."""


class SseParser:
    """Parses one SSE stream incrementally; use one parser per response body."""

    __slots__ = (
        "_block_id",
        "_block_retry",
        "_block_start",
        "_bom_prefix",
        "_data",
        "_ended",
        "_event_type",
        "_id_buffer",
        "_last_event_id",
        "_max_line_bytes",
        "_offset",
        "_oversize_start",
        "_pending",
        "_retry",
    )

    @classmethod
    def continued(cls, offset: int) -> SseParser:
        """A parser for the rest of a stream whose bytes before `offset` are gone (a capture
        gap): offsets stay true to the stream, and no BOM is looked for mid-stream."""
        parser = cls()
        parser._offset = offset
        parser._bom_prefix = None
        return parser

    def __init__(self, max_line_bytes: int = 64 * 1024 * 1024) -> None:
        """Create a parser that skips lines longer than `max_line_bytes` (no ending)."""
        if max_line_bytes < 1:
            message = f"max_line_bytes must be positive, not {max_line_bytes}"
            raise ValueError(message)
        self._max_line_bytes = max_line_bytes
        # Bytes held while it is undecided whether the stream starts with a BOM;
        # None once decided.
        self._bom_prefix: bytes | None = b""
        # The unfinished line: no line ending yet, or a final CR an LF may still follow.
        self._pending = bytearray()
        # Bytes consumed so far (after the BOM): the stream offset of the next byte.
        self._offset = 0
        # Start offset of the over-long line being skipped, while one is.
        self._oversize_start: int | None = None
        self._ended = False
        # The block being read, reset at each dispatch.
        self._block_start: int | None = None  # offset of its first field line
        self._data: list[bytes] = []  # values of its `data` lines
        self._event_type = b""
        self._block_id: str | None = None
        self._block_retry: int | None = None
        # The stream.
        self._id_buffer: str | None = None  # the spec's "last event ID buffer"
        self._last_event_id: str | None = None  # committed from it at each dispatch
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str | None:
        """The cursor: the id committed at the last dispatch (None until one is)."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The last valid `retry` value seen (reconnection time in ms), or None."""
        return self._retry

    @property
    def offset(self) -> int:
        """Bytes consumed so far, not counting a leading BOM (or a possible one)."""
        return self._offset

    def feed(self, data: bytes) -> list[SseItem]:
        """Feed the next chunk and return the items it completed, in stream order.

        `b""` ends the stream. A held line is finished, a line being skipped is reported
        as SseOversize, and the bytes of an unfinished block or line come back as
        SseIncomplete. Feeding after that raises SseError.
        """
        if self._ended:
            message = "SseParser.feed() called after the end of the stream"
            raise SseError(message)
        items: list[SseItem] = []
        if not data:
            self._ended = True
            # A BOM prefix that the stream never completed is ordinary data.
            held = self._bom_prefix or b""
            self._bom_prefix = None
            self._consume(held, items, end_of_stream=True)
            self._finish(items)
            return items
        if self._bom_prefix is not None:
            data = self._bom_prefix + data
            if data.startswith(_BOM):
                data = data[len(_BOM) :]
                self._bom_prefix = None
            elif _BOM.startswith(data):
                self._bom_prefix = data
                return items
            else:
                self._bom_prefix = None
            if not data:
                return items
        self._consume(data, items, end_of_stream=False)
        return items

    def _consume(
        self, data: bytes, items: list[SseItem], *, end_of_stream: bool
    ) -> None:
        """Join `data` to the held line, handle the complete lines, hold the rest."""
        pending = self._pending
        # The usual case (nothing held, no over-long line being skipped) needs no search for
        # line endings: the chunk is split into lines as it is.
        no_line_ending = (
            (bool(pending) or self._oversize_start is not None)
            and not end_of_stream
            and data.find(b"\n") < 0
            and data.find(b"\r") < 0
        )
        if pending:
            if no_line_ending and pending[-1] != _CR:
                # Still inside one line: append, and do not search the old bytes again.
                pending += data
                self._offset += len(data)
                if len(pending) > self._max_line_bytes:
                    self._oversize_start = self._offset - len(pending)
                    self._pending = bytearray()
                return
            buffer = b"".join((pending, data))
            self._pending = bytearray()
        elif no_line_ending and self._oversize_start is not None:
            self._offset += len(data)  # more of the over-long line: drop it
            return
        else:
            buffer = data
        position = self._offset - len(pending)
        self._offset += len(data)
        if not buffer:
            return

        lines = buffer.splitlines(keepends=True)
        tail = lines[-1]
        if tail[-1] == _LF or (end_of_stream and tail[-1] == _CR):
            tail = b""
        else:
            lines.pop()  # a partial line, or one ending in CR that an LF may follow
        if self._oversize_start is not None and lines:
            # The first complete line is the end of the over-long line.
            position += len(lines[0])
            items.append(SseOversize(self._oversize_start, position))
            self._oversize_start = None
            del lines[0]
        position = self._handle_lines(lines, position, items)

        if tail:
            if (
                self._oversize_start is None
                and tail[-1] != _CR
                and len(tail) > self._max_line_bytes
            ):
                self._oversize_start = position
            else:
                self._pending = bytearray(tail)

    def _handle_lines(
        self, lines: list[bytes], position: int, items: list[SseItem]
    ) -> int:
        """Handle complete lines from `position` on; return the offset after them."""
        max_line_bytes = self._max_line_bytes
        for line in lines:
            line_start = position
            position += len(line)
            # `line` has no CR or LF but its ending, so rstrip removes the ending only.
            content = line.rstrip(_LINE_ENDING_BYTES)
            if not content:
                self._dispatch(position, items)
            elif len(content) > max_line_bytes:
                items.append(SseOversize(line_start, position))
            else:
                colon = content.find(b":")
                if colon == 0:
                    skip = 2 if content.startswith(b" ", 1) else 1
                    text = content[skip:].decode("utf-8", "replace")
                    items.append(SseComment(text, line_start, position))
                    continue
                if self._block_start is None:
                    self._block_start = line_start
                if colon < 0:
                    self._field(content, b"")
                    continue
                skip = colon + 2 if content.startswith(b" ", colon + 1) else colon + 1
                name = content[:colon]
                # `data` and `event` inline: they are nearly every line of a stream.
                if name == b"data":
                    self._data.append(content[skip:])
                elif name == b"event":
                    self._event_type = content[skip:]
                else:
                    self._field(name, content[skip:])
        return position

    def _field(self, name: bytes, value: bytes) -> None:
        """Apply one field line (the value has its one leading space removed)."""
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event_type = value
        elif name == b"id":
            if b"\x00" not in value:
                self._id_buffer = self._block_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():  # bytes.isdigit: ASCII digits only
            try:
                retry = int(value)
            except ValueError:  # beyond Python's int/str digit limit: no usable delay
                return
            self._retry = self._block_retry = retry

    def _dispatch(self, end: int, items: list[SseItem]) -> None:
        """Handle an empty line: commit the cursor, fire the block's event if any."""
        self._last_event_id = self._id_buffer
        start = self._block_start
        if start is None:
            return  # no field line since the last dispatch: the block is empty
        data = self._data
        if data:
            # Positional: type, data, last_event_id, id, retry, start, end.
            items.append(
                SseEvent(
                    self._event_type.decode("utf-8", "replace") or "message",
                    (data[0] if len(data) == 1 else b"\n".join(data)).decode(
                        "utf-8", "replace"
                    ),
                    self._last_event_id,
                    self._block_id,
                    self._block_retry,
                    start,
                    end,
                )
            )
        elif self._block_id is not None or self._block_retry is not None:
            items.append(
                SseControl(
                    last_event_id=self._last_event_id,
                    id=self._block_id,
                    retry=self._block_retry,
                    start=start,
                    end=end,
                )
            )
        self._reset_block()

    def _finish(self, items: list[SseItem]) -> None:
        """At the end of the stream, report a skipped line and unfinished bytes."""
        end = self._offset
        if self._oversize_start is not None:
            items.append(SseOversize(self._oversize_start, end))
            self._oversize_start = None
        start = self._block_start
        if start is None and self._pending:
            start = end - len(self._pending)
        if start is not None:
            items.append(SseIncomplete(start, end))
        # The spec discards the unfinished event.
        self._pending = bytearray()
        self._reset_block()

    def _reset_block(self) -> None:
        self._block_start = None
        self._data = []
        self._event_type = b""
        self._block_id = None
        self._block_retry = None
