"""Campaign evaluation: funnel, uplift against the holdout, two-proportion z-test, CI.

Treatment = parties offered the campaign; holdout = parties drawn out of it at random
(``in_holdout``). Uplift = p_t - p_h. The test is the pooled two-proportion z-test
(H0: p_t = p_h, two-sided); the confidence interval of the uplift uses the unpooled
(Wald) standard error. stdlib only (``statistics.NormalDist``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from statistics import NormalDist

_N = NormalDist()


def in_holdout(campaign_id: str, party_id: str, holdout_percent: float) -> bool:
    """A stable draw: the same party stays in (or out of) a campaign's holdout."""
    digest = hashlib.sha256(f"{campaign_id}:{party_id}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return fraction < holdout_percent / 100


@dataclass(frozen=True)
class Uplift:
    """The comparison of treatment and holdout conversion rates."""

    treatment_n: int
    treatment_conversions: int
    holdout_n: int
    holdout_conversions: int
    treatment_rate: float
    holdout_rate: float
    uplift: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    confidence: float
    significant: bool


class NotEnoughData(ValueError):
    """An arm is empty: there is nothing to compare."""


def two_proportion_z_test(
    treatment_n: int,
    treatment_conversions: int,
    holdout_n: int,
    holdout_conversions: int,
    *,
    confidence: float = 0.95,
) -> Uplift:
    """Pooled z-test of p_t vs p_h (two-sided) and the Wald CI of p_t - p_h."""
    if treatment_n <= 0 or holdout_n <= 0:
        raise NotEnoughData("both the treatment and the holdout need at least one party")
    p_t = treatment_conversions / treatment_n
    p_h = holdout_conversions / holdout_n
    pooled = (treatment_conversions + holdout_conversions) / (treatment_n + holdout_n)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / treatment_n + 1 / holdout_n))
    diff = p_t - p_h
    z = diff / se_pooled if se_pooled > 0 else 0.0
    p_value = 2 * (1 - _N.cdf(abs(z)))
    se = math.sqrt(p_t * (1 - p_t) / treatment_n + p_h * (1 - p_h) / holdout_n)
    crit = _N.inv_cdf(1 - (1 - confidence) / 2)
    return Uplift(
        treatment_n,
        treatment_conversions,
        holdout_n,
        holdout_conversions,
        p_t,
        p_h,
        diff,
        z,
        p_value,
        diff - crit * se,
        diff + crit * se,
        confidence,
        p_value < 1 - confidence,
    )


def cost_per_conversion(cost_minor: int, conversions: int) -> int | None:
    """Spend per conversion in minor units (rounded half up); None without conversions."""
    if conversions <= 0:
        return None
    return (2 * cost_minor + conversions) // (2 * conversions)
