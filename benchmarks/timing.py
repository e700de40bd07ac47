"""What every benchmark times with: one call, on the clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def timed(action: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    """The seconds `action(*args, **kwargs)` took."""
    started = time.perf_counter()
    action(*args, **kwargs)
    return time.perf_counter() - started
