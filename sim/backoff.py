"""Client retry delays, as published in "Exponential Backoff And Jitter" (AWS Architecture Blog,
Marc Brooker, 2015). ``retry_no`` is 0 before the first retry, 1 before the second, ...

- no jitter:    sleep = min(cap, base · 2^retry_no)        (``fixed``: min(cap, base))
- full:         sleep = random(0, min(cap, base · 2^retry_no))
- equal:        temp = min(cap, base · 2^retry_no); sleep = temp/2 + random(0, temp/2)
- decorrelated: sleep = min(cap, random(base, prev_sleep · 3)), prev_sleep starting at base
"""

from __future__ import annotations

from sim.rand import RandomStream
from sim.scenario import RetrySpec


def ceiling_ms(backoff: str, base_ms: int, cap_ms: int, retry_no: int) -> float:
    """The un-jittered delay: 0 (none), base (fixed) or base·2^retry_no (exponential), capped."""
    if backoff == "none":
        return 0.0
    if backoff == "fixed":
        return float(min(cap_ms, base_ms))
    return float(min(cap_ms, base_ms * (2.0 ** min(retry_no, 62))))


def full_jitter_ms(base_ms: int, cap_ms: int, retry_no: int, rng: RandomStream) -> int:
    """AWS full jitter: uniform on [0, min(cap, base · 2^retry_no))."""
    return int(rng.random() * ceiling_ms("exponential", base_ms, cap_ms, retry_no))


def retry_delay_ms(spec: RetrySpec, retry_no: int, prev_ms: int, rng: RandomStream) -> int:
    """Delay before retry ``retry_no`` under a tenant's policy; ``prev_ms`` is the previous delay
    (used by decorrelated jitter; pass 0 before the first retry)."""
    if spec.backoff == "none":
        return 0
    if spec.jitter == "decorrelated":
        prev = prev_ms if prev_ms > 0 else spec.base_ms
        return int(min(spec.cap_ms, rng.uniform(spec.base_ms, prev * 3)))
    temp = ceiling_ms(spec.backoff, spec.base_ms, spec.cap_ms, retry_no)
    if spec.jitter == "full":
        return int(rng.random() * temp)
    if spec.jitter == "equal":
        return int(temp / 2.0 + rng.random() * temp / 2.0)
    return int(temp)
