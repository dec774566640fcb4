"""The one easing curve of the stack: the chunk crossfades, the limiter's start-up ramp and the
expert's zone fades all start and end with zero slope through it, so none of them steps a velocity."""

from __future__ import annotations


def smoothstep(u: float) -> float:
    """0 at u <= 0, 1 at u >= 1, 3u^2 - 2u^3 between: zero slope at both ends."""
    u = min(max(u, 0.0), 1.0)
    return u * u * (3.0 - 2.0 * u)
