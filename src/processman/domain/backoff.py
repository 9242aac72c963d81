"""The exponential backoff of SPEC §2."""

from __future__ import annotations


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """``min(base * 2^(failures-1), cap)`` for the ``failures``-th consecutive failure (>= 1)."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    # 2**k overflows a float past ~1024; the cap is reached long before.
    exponent = min(failures - 1, 64)
    return min(base * (2.0**exponent), cap)
