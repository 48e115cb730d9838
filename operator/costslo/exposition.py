"""Prometheus text exposition (format 0.0.4), written by hand.

prometheus_client would append `_total` to every counter, but TGI and Triton expose counters without
that suffix; the simulator must reproduce each exporter's names exactly, so it writes the format itself.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]


def labels_of(mapping: Mapping[str, str]) -> Labels:
    """A hashable, sorted label set (prometheus_client sorts labels the same way)."""
    return tuple(sorted(mapping.items()))


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _render_labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in items) + "}"


class Histogram:
    """A cumulative histogram with fixed upper bounds, like a Prometheus client's."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0.0] * len(self.bounds)
        self.count = 0.0
        self.sum = 0.0

    def observe(self, value: float, times: float = 1.0) -> None:
        """Record `value` `times` times (per-token series record many equal observations at once)."""
        i = bisect.bisect_left(self.bounds, value)
        if i < len(self.counts):
            self.counts[i] += times
        self.count += times
        self.sum += value * times

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0.0
        for bound, c in zip(self.bounds, self.counts, strict=True):
            running += c
            out.append((format_value(bound), running))
        out.append(("+Inf", self.count))
        return out


@dataclass
class Family:
    """One metric family: name, type, help and its samples."""

    name: str
    type: str  # counter | gauge | histogram
    help: str
    values: dict[Labels, float] = field(default_factory=dict)
    histograms: dict[Labels, Histogram] = field(default_factory=dict)

    def render(self) -> Iterable[str]:
        if not self.values and not self.histograms:
            return
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.type}"
        for labels, value in self.values.items():
            yield f"{self.name}{_render_labels(labels)} {format_value(value)}"
        for labels, hist in self.histograms.items():
            for le, cum in hist.cumulative():
                yield f"{self.name}_bucket{_render_labels(labels, (('le', le),))} {format_value(cum)}"
            yield f"{self.name}_sum{_render_labels(labels)} {format_value(hist.sum)}"
            yield f"{self.name}_count{_render_labels(labels)} {format_value(hist.count)}"


def render(families: Iterable[Family]) -> str:
    """Families merged by name (several pods contribute samples to one family) into exposition text."""
    merged: dict[str, Family] = {}
    for fam in families:
        into = merged.get(fam.name)
        if into is None:
            merged[fam.name] = into = Family(fam.name, fam.type, fam.help)
        into.values.update(fam.values)
        into.histograms.update(fam.histograms)
    lines: list[str] = []
    for fam in merged.values():
        lines.extend(fam.render())
    return "\n".join(lines) + "\n"
