"""Memory sizes as people write them: `512MiB`, `2GB`, `1.5G`, `1048576`."""

from __future__ import annotations

import re

from packager.errors import UsageError

UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*")


class SizeError(UsageError):
    """A size that does not read as a number of bytes."""


def parse_size(text: str) -> int:
    """Bytes from a size: a number and a unit (none or B; KB, MB, GB, TB in 1000s; KiB ... TiB in 1024s)."""
    match = SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in UNITS:
        raise SizeError(
            f"{text!r} is not a size: write a number of bytes with an optional unit, e.g. 512MiB or 2GB"
        )
    size = int(float(match.group(1)) * UNITS[unit])
    if size <= 0:
        raise SizeError(f"{text!r}: a size must be more than 0 bytes")
    return size


def shown_size(size: int) -> str:
    """A byte count for people: `84.3 MiB`."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
