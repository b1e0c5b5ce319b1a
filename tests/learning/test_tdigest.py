"""The t-digest port against the Rust ``tdigest`` 0.2.3 rules and against digests NeMo Relay wrote."""

from __future__ import annotations

import math
import random

from relaystore.learning.tdigest import TDigest, k_to_q
from relaystore.models.adaptive import Digest
from tests.learning.conftest import RuntimeOutput


def _one_at_a_time(values: list[float]) -> TDigest:
    digest = TDigest()
    for value in values:
        digest = digest.merge_unsorted([value])  # as NeMo Relay's Stats::add_sample
    return digest


def test_empty_digest_has_nan_extremes_and_zero_quantiles() -> None:
    empty = TDigest()
    assert math.isnan(empty.min) and math.isnan(empty.max)
    assert empty.quantile(0.5) == 0.0 and empty.quantile(0.0) == 0.0
    assert empty.merge_sorted([]) is empty


def test_nan_and_null_become_zero_on_the_wire() -> None:
    stored = TDigest().to_model()
    assert (stored.to_dict()["min"], stored.to_dict()["max"]) == (0.0, 0.0)
    assert TDigest().to_dict()["min"] == 0.0
    reloaded = Digest.model_validate(
        {"centroids": [], "count": 0.0, "max": None, "max_size": 100, "min": None, "sum": 0.0}
    )
    assert (reloaded.min, reloaded.max) == (0.0, 0.0)
    # After a reload the empty extremes are 0.0; the first merge must still ignore them.
    digest = TDigest.from_model(reloaded).merge_unsorted([7.0])
    assert (digest.min, digest.max) == (7.0, 7.0)


def test_k_to_q_scale() -> None:
    assert k_to_q(1.0, 100.0) == 2.0 * 0.01 * 0.01
    assert k_to_q(50.0, 100.0) == 0.5
    assert k_to_q(75.0, 100.0) == 1.0 - 2.0 * 0.25 * 0.25
    assert k_to_q(100.0, 100.0) == 1.0


def test_quantile_edges_and_clamping() -> None:
    digest = TDigest().merge_unsorted([3.0, 1.0, 2.0])
    assert digest.centroids == ((1.0, 1.0), (2.0, 1.0), (3.0, 1.0))
    assert (digest.quantile(0.0), digest.quantile(1.0)) == (1.0, 3.0)
    assert digest.quantile(0.5) == 2.0
    assert TDigest().merge_unsorted([5.0]).quantile(0.9) == 5.0


def test_260_samples_compress_and_keep_totals() -> None:
    rng = random.Random(260)
    values = [float(rng.randint(0, 500)) for _ in range(260)]
    digest = _one_at_a_time(values)
    assert digest.count == 260.0
    assert len(digest.centroids) < 100
    assert sum(w for _, w in digest.centroids) == 260.0
    assert digest.sum == sum(values)  # integers: exact in any order
    assert (digest.min, digest.max) == (min(values), max(values))
    assert [m for m, _ in digest.centroids] == sorted(m for m, _ in digest.centroids)
    # Merging a batch differs from one-at-a-time merging, as in the crate, but keeps the totals.
    batch = TDigest().merge_unsorted(values)
    assert batch.count == digest.count and batch.sum == digest.sum


def test_matches_digests_nemo_relay_wrote(varied: RuntimeOutput) -> None:
    """Every sample the runtime added to the root's output-token digest, replayed one at a time,
    gives the identical digest (centroids, sum, extremes) and identical p50/p90/p95."""
    tokens = [
        float(c.output_tokens or 0) for r in varied.runs for c in r.calls if c.kind == "llm" and c.ended_at
    ]
    stored = varied.doc("accumulators").nodes[""].all_output_tokens
    ours = _one_at_a_time(tokens)
    assert len(ours.centroids) < len(tokens)  # compression really happened
    assert ours.to_model() == stored.digest
    prediction = varied.doc("trie").root.predictions_any_index.output_tokens
    assert (ours.quantile(0.5), ours.quantile(0.9), ours.quantile(0.95)) == (
        prediction.p50,
        prediction.p90,
        prediction.p95,
    )
