"""What a load test's samples say: latency percentiles and throughput per concurrency level, the knee, and
the SageMaker auto-scaling target it suggests.

The knee is the level with the highest throughput whose p99 latency meets the objective and that had no
errors: past it, more concurrency only queues. The recommended target for the
`SageMakerVariantInvocationsPerInstance` target-tracking metric (invocations per instance per *minute*) is
`knee throughput (req/s) × 60 × headroom`: headroom below 1 (0.5 by default) leaves room for bursts while
a new instance starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

DEFAULT_HEADROOM = 0.5


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of `values`, interpolated linearly between ranks (numpy's default);
    NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Level:
    """One concurrency level's result: requests sent in the measured window, errors among them,
    throughput of the successful ones, and their latency percentiles in milliseconds (NaN: none): to the
    whole answer (a stream's final flag), and for streams to the first response (`first_*`)."""

    concurrency: int
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    error_samples: tuple[str, ...] = ()
    first_p50_ms: float = math.nan
    first_p95_ms: float = math.nan
    first_p99_ms: float = math.nan
    first_error: str = ""  # the first error in the measured window ("": none)

    def to_json(self) -> dict[str, object]:
        """The level as JSON: times rounded to the microsecond, null where no request was answered."""
        document: dict[str, object] = asdict(self)
        for key in (
            "seconds",
            "throughput",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "first_p50_ms",
            "first_p95_ms",
            "first_p99_ms",
        ):
            value = getattr(self, key)
            document[key] = None if math.isnan(value) else round(value, 3)
        document["error_samples"] = list(self.error_samples)
        return document


def summarize(
    concurrency: int,
    latencies: Sequence[float],
    *,
    errors: int,
    seconds: float,
    error_samples: Sequence[str] = (),
    firsts: Sequence[float] = (),
    first_error: str = "",
) -> Level:
    """A level from its successful requests' latencies (seconds; `firsts`: a stream's to its first
    response), its error count and the measured span."""
    milliseconds = [latency * 1000 for latency in latencies]
    first_ms = [first * 1000 for first in firsts]
    return Level(
        concurrency,
        len(latencies) + errors,
        errors,
        seconds,
        len(latencies) / seconds if seconds > 0 else 0.0,
        percentile(milliseconds, 50),
        percentile(milliseconds, 95),
        percentile(milliseconds, 99),
        tuple(error_samples),
        percentile(first_ms, 50),
        percentile(first_ms, 95),
        percentile(first_ms, 99),
        first_error,
    )


def meets(level: Level, p99_ms: float) -> bool:
    """Whether a level meets the latency objective: requests answered, none failed, p99 within it."""
    return level.requests > level.errors and level.errors == 0 and level.p99_ms <= p99_ms


def knee(levels: Sequence[Level], p99_ms: float) -> Level | None:
    """The highest-throughput level that meets the objective (the lower concurrency on a tie); None when
    no level does."""
    meeting = [level for level in levels if meets(level, p99_ms)]
    return max(meeting, key=lambda level: (level.throughput, -level.concurrency), default=None)


def recommended_target(throughput: float, headroom: float = DEFAULT_HEADROOM) -> float:
    """SageMakerVariantInvocationsPerInstance's target: per-second throughput × 60 (it counts per minute,
    per instance) × headroom."""
    return throughput * 60 * headroom
