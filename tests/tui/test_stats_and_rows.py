"""Pure helpers of the TUI: statistics for charts and tables, row formatting."""

from __future__ import annotations

from tui.filters import TimelineFilter
from tui.rows import compact, format_ms, format_offset, message_entry
from tui.stats import (
    bucket_of,
    distributions,
    gap_series,
    percentile,
    percentiles_by_key,
)
from tui.timeline_index import MESSAGE


def test_percentiles_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile([], 0.5) is None
    assert percentiles_by_key([(1, 3.0), (1, 1.0), (2, 7.0)]) == {1: (1.0, 3.0), 2: (7.0, 7.0)}


def test_latency_distribution_per_method_and_name() -> None:
    calls = [("tools/call", "echo", 1.0, "result"), ("tools/call", "echo", 100.0, "result"),
             ("tools/call", "slow", None, "pending"), ("ping", None, 0.05, "error"),
             ("tools/call", "slow", None, "cancelled")]
    found = {d.label: d for d in distributions(calls)}
    assert found["tools/call echo"].count == 2 and found["tools/call echo"].maximum == 100.0
    assert found["tools/call slow"].pending == 1 and found["ping"].errors == 1
    assert found["tools/call slow"].count == 2 and found["tools/call slow"].cancelled == 1
    assert found["tools/call slow"].p50 is None
    assert sum(found["tools/call echo"].buckets) == 2
    assert bucket_of(0.01) == 0 and bucket_of(1e9) == len(found["ping"].buckets) - 1
    assert [d.label for d in distributions(calls, by_name=False)] == ["tools/call", "ping"]


def test_gap_series_charges_each_silence_to_where_it_ended() -> None:
    series = gap_series([(1, 1.0), (1, 1.5), (1, 9.0), (2, 9.5)], {1: 0.0, 2: 9.4}, 0.0, 10.0,
                        10)
    assert series.maxima_ms[9] == 7500.0  # 1.5 -> 9.0
    assert series.maxima_ms[1] == 1000.0  # opened at 0, first byte at 1.0
    assert series.worst_ms == 7500.0 and series.worst_at == 9.0


def test_formatting() -> None:
    assert format_offset(1.5) == "+1.500s"
    assert format_offset(1234) == "+20m34s"
    assert format_offset(3 * 3600 + 5) == "+3h00m05"
    assert format_ms(0.5) == "0.50 ms" and format_ms(1500) == "1.50 s"
    assert compact({"a": "x" * 500}, 20).endswith("…")


def test_request_row_shows_latency_outcome_and_links_to_its_response() -> None:
    entry = message_entry({
        "id": 7, "t": 1.0, "direction": "c2s", "kind": "request", "rpc_id": "3",
        "method": "tools/call", "call_id": 2, "json_head": '{"jsonrpc":"2.0","id":3,"method":'
        '"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}', "json_len": 84,
        "call_name": "echo", "latency_ms": 12.0, "outcome": "result", "progress_count": 2,
        "response_message_id": 9})
    assert entry.key == (MESSAGE, 7) and entry.linked == (MESSAGE, 9)
    assert entry.text == '#3 tools/call echo  {"text":"hi"}'
    assert entry.note == "2× prog 12.0 ms ✓"


def test_filter_description_and_direction_cycle() -> None:
    f = TimelineFilter()
    assert not f.active and f.describe() == ""
    assert f.with_direction_cycled().directions == {"c2s"}
    assert f.with_direction_cycled().with_direction_cycled().directions == {"s2c"}
    assert f.with_direction_cycled().with_direction_cycled().with_direction_cycled() == f
    g = TimelineFilter(methods=frozenset({"ping"}), flagged_only=True)
    assert g.describe() == "method ping · flagged"
    assert not g.wants_exchanges and not g.wants_heartbeats and g.wants_messages
