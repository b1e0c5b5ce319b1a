"""A t-digest that reproduces the Rust ``tdigest`` 0.2.3 crate bit for bit.

NeMo Relay keeps one of these per statistic (``Stats.digest``) and reads p50/p90/p95 from it.
Every floating-point operation below happens in the crate's order, so centroids, ``sum``,
``min``/``max`` and quantiles come out identical to what the Rust runtime stores.

A digest is immutable: :meth:`TDigest.merge_sorted` and :meth:`TDigest.merge_unsorted` return a
new one, as the crate does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise

from relaystore.models.adaptive import Centroid, Digest

DEFAULT_MAX_SIZE = 100
NAN = math.nan

# (mean, weight); a tuple is much cheaper than a model for the hot merge loop.
CentroidPair = tuple[float, float]


def k_to_q(k: float, d: float) -> float:
    """The crate's scale function: cumulative quantile limit for the k-th of d centroids."""
    ratio = k / d
    if ratio >= 0.5:
        base = 1.0 - ratio
        return 1.0 - 2.0 * base * base
    return 2.0 * ratio * ratio


def _ordered_min(current: float, candidate: float) -> float:
    # ``std::cmp::min`` over OrderedFloat: NaN sorts above every number, ties keep ``current``.
    if math.isnan(candidate):
        return current
    if math.isnan(current) or candidate < current:
        return candidate
    return current


def _ordered_max(current: float, candidate: float) -> float:
    # ``std::cmp::max`` over OrderedFloat: NaN is the greatest value, ties take ``candidate``.
    if math.isnan(current):
        return current
    if math.isnan(candidate) or candidate >= current:
        return candidate
    return current


def _ordered_key(value: float) -> tuple[bool, float]:
    # OrderedFloat's total order: every NaN sorts after every number.
    return (True, 0.0) if math.isnan(value) else (False, value)


def _clamp(value: float, lo: float, hi: float) -> float:
    if value > hi:
        return hi
    if value < lo:
        return lo
    return value


@dataclass(frozen=True)
class TDigest:
    """Centroids ``(mean, weight)`` sorted by mean, plus count, sum and the extremes.

    ``min``/``max`` are NaN while the digest is empty, as in the crate.
    """

    centroids: tuple[CentroidPair, ...] = ()
    max_size: int = DEFAULT_MAX_SIZE
    sum: float = 0.0
    count: float = 0.0
    max: float = NAN
    min: float = NAN

    # ------------------------------------------------------------------ merging

    def merge_unsorted(self, values: Sequence[float]) -> TDigest:
        """Add raw samples in any order (the crate sorts them, NaN last)."""
        return self.merge_sorted(sorted(values, key=_ordered_key))

    def merge_sorted(self, values: Sequence[float]) -> TDigest:
        """Add samples already sorted ascending; returns the new digest (as ``TDigest::merge_sorted``)."""
        if not values:
            return self
        count = self.count + float(len(values))
        if self.count > 0.0:
            low, high = _ordered_min(self.min, values[0]), _ordered_max(self.max, values[-1])
        else:
            low, high = values[0], values[-1]
        centroids, total = self._compress(values, count)
        return TDigest(tuple(centroids), self.max_size, total, count, high, low)

    def _compress(self, values: Sequence[float], count: float) -> tuple[list[CentroidPair], float]:
        """Merge old centroids and new unit-weight values into at most ~max_size centroids."""
        size = float(self.max_size)
        merged = _merge_streams(self.centroids, values)
        limit = k_to_q(1.0, size) * count
        k = 2.0
        cur_mean, cur_weight = next(merged)
        so_far = cur_weight
        pending_sum = pending_weight = 0.0
        total = 0.0
        out: list[CentroidPair] = []
        for mean, weight in merged:
            so_far += weight
            if so_far <= limit:
                pending_sum += mean * weight
                pending_weight += weight
                continue
            folded = pending_sum + cur_weight * cur_mean
            cur_weight += pending_weight
            out.append((folded / cur_weight, cur_weight))
            total += folded
            pending_sum = pending_weight = 0.0
            limit = k_to_q(k, size) * count
            k += 1.0
            cur_mean, cur_weight = mean, weight
        folded = pending_sum + cur_weight * cur_mean
        cur_weight += pending_weight
        out.append((folded / cur_weight, cur_weight))
        total += folded
        if not _ascending(out):  # merged input is sorted, so rounding is the only way out of order
            out.sort(key=lambda c: _ordered_key(c[0]))  # stable, like Vec::sort
        return out, total

    # ------------------------------------------------------------------ reading

    def quantile(self, q: float) -> float:
        """Estimated q-quantile (0 ≤ q ≤ 1); 0.0 for an empty digest (``estimate_quantile``)."""
        cs = self.centroids
        if not cs:
            return 0.0
        rank = q * self.count
        if q > 0.5:
            if q >= 1.0:
                return self.max
            pos, t = self._walk_down(rank)
        else:
            if q <= 0.0:
                return self.min
            pos, t = self._walk_up(rank)
        lo, hi, delta = self.min, self.max, 0.0
        last = len(cs) - 1
        if last > 0:
            if pos == 0:
                delta, hi = cs[1][0] - cs[0][0], cs[1][0]
            elif pos == last:
                delta, lo = cs[pos][0] - cs[pos - 1][0], cs[pos - 1][0]
            else:
                delta = (cs[pos + 1][0] - cs[pos - 1][0]) / 2.0
                lo, hi = cs[pos - 1][0], cs[pos + 1][0]
        mean, weight = cs[pos]
        return _clamp(mean + ((rank - t) / weight - 0.5) * delta, lo, hi)

    def _walk_down(self, rank: float) -> tuple[int, float]:
        t = self.count
        for index in range(len(self.centroids) - 1, -1, -1):
            t -= self.centroids[index][1]
            if rank >= t:
                return index, t
        return 0, t

    def _walk_up(self, rank: float) -> tuple[int, float]:
        t = 0.0
        for index, (_, weight) in enumerate(self.centroids):
            if rank < t + weight:
                return index, t
            t += weight
        return len(self.centroids) - 1, t

    # ------------------------------------------------------------------ wire form

    @classmethod
    def from_model(cls, digest: Digest) -> TDigest:
        """Rebuild from the stored form. Stored ``min``/``max`` of an empty digest are 0.0, not NaN;
        the merge ignores them while ``count`` is 0, exactly as the crate does after a reload."""
        return cls(
            tuple((c.mean, c.weight) for c in digest.centroids),
            digest.max_size,
            digest.sum,
            digest.count,
            digest.max,
            digest.min,
        )

    def to_model(self) -> Digest:
        """The stored form; NaN extremes become 0.0 when serialized (see :class:`Digest`)."""
        return Digest(
            centroids=[Centroid(mean=m, weight=w) for m, w in self.centroids],
            count=self.count,
            max=self.max,
            max_size=self.max_size,
            min=self.min,
            sum=self.sum,
        )

    def to_dict(self) -> dict[str, object]:
        """The stored form as plain JSON data (NaN → 0.0), keys sorted as the crate writes them."""
        return {
            "centroids": [{"mean": m, "weight": w} for m, w in self.centroids],
            "count": self.count,
            "max": _finite(self.max),
            "max_size": self.max_size,
            "min": _finite(self.min),
            "sum": self.sum,
        }


def _ascending(centroids: list[CentroidPair]) -> bool:
    # False whenever a NaN mean is present (every comparison with NaN fails), forcing the sort.
    return all(a[0] <= b[0] for a, b in pairwise(centroids))


def _finite(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def _merge_streams(centroids: Sequence[CentroidPair], values: Sequence[float]) -> Iterator[CentroidPair]:
    """Old centroids and unit-weight values in ascending order; a centroid goes first only when
    its mean is strictly below the next value (ties take the value first, as the crate)."""
    i = j = 0
    n_c, n_v = len(centroids), len(values)
    while i < n_c or j < n_v:
        if i < n_c and (j >= n_v or centroids[i][0] < values[j]):
            yield centroids[i]
            i += 1
        else:
            yield (values[j], 1.0)
            j += 1
