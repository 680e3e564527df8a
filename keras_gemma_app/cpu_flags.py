"""The instruction sets the CPU lists in ``/proc/cpuinfo`` (Linux)."""

from __future__ import annotations

import functools


def parse(cpuinfo: str) -> set[str]:
    """The flags on ``/proc/cpuinfo``'s ``flags`` lines."""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return flags


@functools.cache
def read() -> set[str] | None:
    """This machine's flags; None where ``/proc/cpuinfo`` cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            return parse(file.read())
    except OSError:
        return None
