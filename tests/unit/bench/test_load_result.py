import numpy as np
import pytest

from inferopt.bench.histogram import LatencyHistogram
from inferopt.bench.load_result import CLOSED_LOOP, OPEN_LOOP, merge_records, summarize
from inferopt.bench.sender import ABANDONED, CONNECTION_ERROR, NOT_SENT, TIMEOUT, WorkerRecord


def record(n: int = 2000, *, late: int = 0, lag_s: float = 0.005, service_s: float = 0.002) -> WorkerRecord:
    """n requests at 1,000/s from t=0, each answered after `service_s`; the first `late` ones sent `lag_s` late."""
    intended = np.arange(n) / 1000.0
    dispatched = intended.copy()
    dispatched[:late] += lag_s
    sent = dispatched.copy()
    return WorkerRecord(intended, dispatched, sent, sent + service_s, np.full(n, 200, np.int32), 4, 0)


def test_more_than_one_percent_late_is_invalid() -> None:
    ok = summarize(record(late=19), mode=OPEN_LOOP, offered_rate=1000, window=(0.0, 2.0))
    bad = summarize(record(late=22), mode=OPEN_LOOP, offered_rate=1000, window=(0.0, 2.0))
    assert ok.late_fraction == pytest.approx(19 / 2000) and ok.valid and ok.invalid_reason is None
    assert bad.late_fraction == pytest.approx(22 / 2000) and not bad.valid
    assert bad.invalid_reason.startswith("INVALID: the load generator fell behind: 1.1%")
    assert bad.notes()[0] == bad.invalid_reason
    # Lateness counts in the latency: late requests waited 5 ms more than their service time.
    assert bad.latency_ms["max"] == pytest.approx(7.0, rel=0.01)
    assert bad.service_ms["max"] == pytest.approx(2.0, rel=0.01)


def test_lateness_under_one_millisecond_is_not_late() -> None:
    result = summarize(record(late=500, lag_s=0.0009), mode=OPEN_LOOP, offered_rate=1000, window=(0.0, 2.0))
    assert result.late_fraction == 0.0 and result.valid


def test_closed_loop_is_never_invalid_and_says_what_it_is() -> None:
    result = summarize(record(late=1000), mode=CLOSED_LOOP, offered_rate=None, window=(0.0, 2.0))
    assert result.valid and result.dispatch_lag_ms == {}
    assert any(note.startswith("CLOSED LOOP") for note in result.notes())


def test_warmup_is_excluded_and_rates_count_the_window_only() -> None:
    result = summarize(record(3000), mode=OPEN_LOOP, offered_rate=1000, window=(1.0, 3.0))
    assert result.measured == 2000 and result.window_s == pytest.approx(2.0)
    assert result.achieved_rate == pytest.approx(1000, rel=0.01)
    assert result.latency_ms["p50"] == pytest.approx(2.0, rel=0.01)
    assert result.latency_ms["p99"] == pytest.approx(2.0, rel=0.01)
    assert result.latency_ms["p99_9"] is None  # 2,000 < 6,600 samples


def test_errors_are_counted_by_kind_and_kept_out_of_latency() -> None:
    rec = record(1000)
    rec.status[::10] = 500
    rec.status[1::50] = TIMEOUT
    rec.status[2::100] = CONNECTION_ERROR
    rec.done[rec.status == TIMEOUT] += 30.0
    result = summarize(rec, mode=OPEN_LOOP, offered_rate=1000, window=(0.0, 1.0))
    assert result.errors == {"500": 100, "timeout": 20, "connection error": 10}
    assert result.ok == 870 and result.error_fraction == pytest.approx(0.13)
    assert result.latency_ms["max"] == pytest.approx(2.0, rel=0.01)
    assert "ERRORS: 13.0% of requests failed" in result.notes()[0]


def test_unsent_and_abandoned_requests_of_an_interrupted_run_are_not_errors() -> None:
    rec = record(1000)
    rec.status[600:] = NOT_SENT
    rec.status[590:600] = ABANDONED
    result = summarize(rec, mode=OPEN_LOOP, offered_rate=1000, window=(0.0, 0.6), partial="interrupted after 0.6s")
    assert result.measured == 590 and result.errors == {}
    assert result.notes() == ["PARTIAL: interrupted after 0.6s"]


def test_records_of_several_senders_merge_in_intended_order() -> None:
    a, b = record(10), record(10)
    b.intended[:] += 0.0005
    merged = merge_records([a, b])
    assert merged.intended.size == 20 and np.all(np.diff(merged.intended) > 0)
    assert merged.connections_opened == 8


def test_histogram_round_trips_and_honours_the_sample_rule() -> None:
    values = np.random.default_rng(0).exponential(0.01, 7000)
    hist = LatencyHistogram.of(values)
    summary = hist.summary()
    assert summary["p99_9"] is not None
    assert summary["p99"] == pytest.approx(np.percentile(values, 99) * 1000, rel=0.002)
    assert LatencyHistogram.decode(hist.encode()).summary() == summary
    assert LatencyHistogram.of(values[:600]).summary()["p99"] is None


def test_429s_are_rejections_with_their_own_latency_and_retry_after_count() -> None:
    rec = record(1000)
    rec.status[::4] = 429
    rec.done[::4] = rec.sent[::4] + 0.0005  # refused at once
    rec.retry_after = np.zeros(1000, dtype=bool)
    rec.retry_after[::8] = True  # half of the 429s said when to come back
    rec.retry_after[1] = True  # a 200 with the flag is not a rejection
    result = summarize(rec, mode=OPEN_LOOP, offered_rate=1000, window=(0.0, 1.0))
    assert result.errors == {"429": 250} and result.ok == 750  # the existing fields keep their meaning
    assert result.latency_ms["max"] == pytest.approx(2.0, rel=0.01)
    refused = result.rejections
    assert refused.count == 250 and refused.with_retry_after == 125
    assert refused.latency_ms["n"] == 250 and refused.latency_ms["max"] == pytest.approx(0.5, rel=0.01)
    assert refused.latency_ms["p99"] is None  # 250 < 660 samples
    assert result.to_dict()["rejections"]["with_retry_after"] == 125


def test_rejections_are_windowed_and_merge_across_senders() -> None:
    a, b = record(1000), record(1000)
    b.intended[:] += 0.0005
    a.status[::2] = 429
    a.retry_after = a.status == 429  # b answered no 429: its record has no mask
    merged = merge_records([a, b])
    assert merged.retry_after is not None and int(merged.retry_after.sum()) == 500
    result = summarize(merged, mode=OPEN_LOOP, offered_rate=2000, window=(0.5, 1.0))
    assert result.rejections.count == result.rejections.with_retry_after == 250
    none = summarize(record(100), mode=OPEN_LOOP, offered_rate=1000, window=(0.0, 1.0)).rejections
    assert none.count == 0 and none.latency_ms["p50"] is None
