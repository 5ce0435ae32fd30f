"""`profile ARTIFACT`: the serving pipeline in-process, on the real MiniLM artifact."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferopt.bench.profile import profile_artifact


@pytest.mark.slow
def test_artifact_profile_stages_sum_to_total_and_inference_dominates(minilm_artifact: Path) -> None:
    texts = [f"A man with a hard hat is dancing, take {i}." for i in range(120)]
    result = profile_artifact(minilm_artifact, texts, 100, warmup=10)
    assert result.mode == "in-process" and result.requests == 100
    assert result.stage_sum_ratio() == pytest.approx(1.0, abs=0.05)
    rows = {row["stage"]: row for row in result.breakdown()}
    assert rows["queue"]["p50_ms"] == 0.0
    assert rows["inference"]["typical_share"] > 0.5  # a 6-layer transformer outweighs JSON and tokenizing
    assert any("in-process" in note for note in result.notes)
