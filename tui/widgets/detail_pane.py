"""The detail of the highlighted timeline row: JSON tree, HTTP headers, raw SSE bytes, call."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static, TabbedContent, TabPane

from recorder.store import StoreError
from tui.detail_data import Detail, load_detail
from tui.readers import ReaderPool
from tui.rows import format_bytes, format_ms, format_offset
from tui.timeline_index import MESSAGE, RowKey
from tui.widgets.flags_panel import FlagsPanel
from tui.widgets.json_tree import JsonTree

ARROWS = {"c2s": "→", "s2c": "←"}


def http_view(detail: Detail) -> RenderableType:
    exchange = detail.exchange
    if exchange is None:
        return Text("No HTTP exchange for this row.", style="dim")
    status = exchange.get("status")
    head = Text()
    head.append(f"{exchange['method']} ", "bold")
    head.append(exchange["url"])
    head.append(f"  → {status if status is not None else '…'} {exchange.get('reason') or ''}",
                "bold green" if status is not None and status < 400 else "bold red")
    if exchange.get("error"):
        head.append(f"\n  error: {exchange['error']}", "red")

    def headers(title: str, items: list[tuple[str, str]], ctype: str | None,
                body: bytes | None) -> Table:
        table = Table(title=title, title_justify="left", title_style="bold", box=None,
                      show_header=False, padding=(0, 1), expand=False)
        table.add_column(style="cyan", no_wrap=True)
        table.add_column(overflow="fold")
        for name, value in items:
            table.add_row(name, Text(value, style="italic yellow" if "redacted" in value
                                     or value.startswith("<") else ""))
        if not items:
            table.add_row("(none)", "")
        if body:
            table.add_row(Text("body", style="dim"),
                          Text(f"{format_bytes(len(body))} {ctype or ''}", style="dim"))
        return table

    return Group(head, Text(""),
                 headers("Request headers (as stored: redacted)", exchange["request_headers"],
                         exchange.get("request_content_type"), exchange.get("request_body")),
                 Text(""),
                 headers("Response headers", exchange["response_headers"],
                         exchange.get("response_content_type"), exchange.get("response_body")))


def _visible(data: bytes) -> Text:
    """Bytes as text with line ends and other control characters made visible."""
    decoded = data.decode("utf-8", "replace")
    text = Text()
    for char in decoded:
        if char == "\n":
            text.append("␊\n", "dim")
        elif char == "\r":
            text.append("␍", "dim")
        elif char == "\t":
            text.append("␉", "dim")
        elif ord(char) < 32 or char == "\ufeff":
            text.append(f"\\x{ord(char):02x}", "reverse")
        else:
            text.append(char)
    return text


def bytes_view(detail: Detail, started_at: float) -> RenderableType:
    if detail.byte_range is None:
        return Text("No SSE bytes for this row (it did not arrive on an SSE stream).",
                    style="dim")
    start, end = detail.byte_range
    parts: list[RenderableType] = [Text(f"bytes {start}–{end} of the stream "
                                        f"({end - start} bytes, {len(detail.chunks)} "
                                        f"chunk{'s' if len(detail.chunks) != 1 else ''})",
                                        style="bold")]
    for chunk in detail.chunks:
        data: bytes = chunk["data"]
        offset = chunk["offset"]
        piece = data[max(start - offset, 0): max(min(end - offset, len(data)), 0)]
        parts.append(Text(f"── chunk {chunk['seq']} at {format_offset(chunk['t'] - started_at)}, "
                          f"stream bytes {offset}–{offset + len(data)}", style="dim"))
        parts.append(_visible(piece))
    if not detail.chunks:
        parts.append(Text("(the chunks of this range were not stored)", style="dim"))
    return Group(*parts)


def call_view(detail: Detail) -> RenderableType:
    call = detail.call
    if call is None:
        return Text("This row is not part of a call.", style="dim")
    head = Text()
    head.append(f"{call['method']}", "bold")
    if call.get("name"):
        head.append(f" {call['name']}", "bold")
    head.append(f"   id {call['rpc_id']}  {call['direction']}  ")
    outcome = call["outcome"]
    head.append(outcome, {"result": "green", "error": "red"}.get(outcome, "yellow"))
    if call.get("latency_ms") is not None:
        head.append(f" in {format_ms(call['latency_ms'])}")
    if call.get("error_code") is not None:
        head.append(f"\nerror {call['error_code']}: {call.get('error_message') or ''}", "red")
    if call.get("progress_count"):
        head.append(f"\n{call['progress_count']} progress notifications")
    if call.get("cancelled_at") is not None:
        head.append(f"\ncancelled at +{(call['cancelled_at'] - call['sent_at']) * 1000:.1f} ms"
                    + (f": {call['cancel_reason']}" if call.get("cancel_reason") else ""),
                    "yellow")
    if call.get("late"):
        head.append("\nanswered after it was cancelled (late)", "yellow")
    table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
    table.add_column(style="dim", justify="right", no_wrap=True, min_width=12)
    table.add_column(no_wrap=True, min_width=1)
    table.add_column(no_wrap=True, min_width=12)
    table.add_column(overflow="ellipsis", no_wrap=True, ratio=1)
    for message in detail.call_messages:
        elapsed = (message["t"] - call["sent_at"]) * 1000
        marker = "▶" if detail.key == (MESSAGE, message["id"]) else " "
        table.add_row(f"{marker} +{elapsed:.1f} ms", ARROWS.get(message["direction"], " "),
                      message["kind"], message.get("method") or (message.get("json_head") or "")[:80])
    return Group(head, Text(""), table)


class DetailPane(Vertical):
    """Tabs for the selected row; loads it in a worker whenever the highlight moves."""

    class DetailLoaded(Message):
        """The detail of a row was read."""

        def __init__(self, detail: Detail) -> None:
            super().__init__()
            self.detail = detail

    def __init__(self, pool: ReaderPool, started_at: float, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.pool = pool
        self.started_at = started_at
        self.detail: Detail | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="detail-title")
        with TabbedContent(id="detail-tabs", initial="tab-json"):
            with TabPane("JSON", id="tab-json"):
                yield JsonTree(id="json-tree")
            with TabPane("HTTP", id="tab-http"), VerticalScroll():
                yield Static(id="http-view")
            with TabPane("Bytes", id="tab-bytes"), VerticalScroll():
                yield Static(id="bytes-view")
            with TabPane("Call", id="tab-call"), VerticalScroll():
                yield Static(id="call-view")
            with TabPane("Flags", id="tab-flags"):
                yield FlagsPanel(self.started_at, id="flags-panel")

    def show_key(self, key: RowKey) -> None:
        self._load(key)

    @work(thread=True, exclusive=True, group="detail")
    def _load(self, key: RowKey) -> None:
        try:
            with self.pool.reader() as reader:
                detail = load_detail(reader, key, self.started_at)
        except StoreError as exc:
            detail = Detail(key, f"could not read this row: {exc}")
        self.post_message(self.DetailLoaded(detail))

    def on_detail_pane_detail_loaded(self, message: DetailLoaded) -> None:
        detail = message.detail
        self.detail = detail
        self.query_one("#detail-title", Static).update(Text(detail.title, style="bold"))
        tree = self.query_one(JsonTree)
        payload: Any = detail.payload
        if payload is None and detail.json_text is not None:
            payload = detail.json_text  # not JSON (or too big to parse): show the text
        tree.show(payload, label="")
        self.query_one("#http-view", Static).update(http_view(detail))
        self.query_one("#bytes-view", Static).update(bytes_view(detail, self.started_at))
        self.query_one("#call-view", Static).update(call_view(detail))

    TABS = ("tab-json", "tab-http", "tab-bytes", "tab-call", "tab-flags")

    def show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def focus_content(self) -> None:
        """Focus what the active tab shows (the JSON tree, the flags, a scrolling view)."""
        pane = self.query_one(TabbedContent).active_pane
        if pane is not None:
            target = pane.query("JsonTree, FlagsPanel, VerticalScroll").first()
            target.focus()

    def show_flags(self) -> None:
        self.show_tab("tab-flags")
        self.query_one(FlagsPanel).focus()

    def set_flag_count(self, count: int) -> None:
        self.query_one(TabbedContent).get_tab("tab-flags").label = f"Flags {count}"
