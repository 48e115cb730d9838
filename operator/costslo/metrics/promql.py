"""PromQL text built from values we do not control: label matchers no label value can break out of.

Namespace and pod names come from users and clusters, so every value reaches PromQL through `quote`
(a string literal that reads back as exactly the value) and, for `=~`, through `regex_escape` first
(a pattern that matches exactly the value). Label and metric names are checked, never escaped: PromQL
has no quoting for them in the classic syntax, so a bad one is a configuration error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal

MatchOp = Literal["=", "!=", "=~", "!~"]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Go's regexp.QuoteMeta escapes exactly these; RE2 reads every other character literally.
_REGEX_META = frozenset("\\.+*?()|[]{}^$")
_SHORT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: str) -> str:
    """A double-quoted PromQL string literal that reads back as exactly `value`."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"label value {value!r} is not valid Unicode (lone surrogate)")
        elif code < 0x20 or code == 0x7F or code == 0xFFFD:
            # PromQL's lexer reads a raw U+FFFD as an encoding error, so it travels escaped like controls.
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def regex_escape(value: str) -> str:
    """An RE2 pattern that matches exactly `value` and nothing else (PromQL anchors `=~` patterns)."""
    return "".join("\\" + ch if ch in _REGEX_META else ch for ch in value)


def check_label_name(name: str) -> str:
    """`name` if it is a valid PromQL label name, else ValueError."""
    if not _LABEL_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return name


def check_metric_name(name: str) -> str:
    """`name` if it is a valid PromQL metric name, else ValueError."""
    if not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
    return name


@dataclass(frozen=True)
class Matcher:
    """One label matcher; `value` is a literal for = and !=, an RE2 pattern for =~ and !~."""

    label: str
    op: MatchOp
    value: str

    def __post_init__(self) -> None:
        check_label_name(self.label)
        if self.op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"unknown matcher operator {self.op!r}")

    def __str__(self) -> str:
        return f"{self.label}{self.op}{quote(self.value)}"

    @classmethod
    def equal(cls, label: str, value: str) -> Matcher:
        """label="value"."""
        return cls(label, "=", value)

    @classmethod
    def not_equal(cls, label: str, value: str) -> Matcher:
        """label!="value"."""
        return cls(label, "!=", value)

    @classmethod
    def one_of(cls, label: str, values: Collection[str]) -> Matcher:
        """Matches exactly the given values: `=` for one, an escaped alternation for several."""
        distinct = sorted(set(values))
        if not distinct:
            raise ValueError(f"no values to match for label {label!r}")
        if len(distinct) == 1:
            return cls(label, "=", distinct[0])
        return cls(label, "=~", "|".join(regex_escape(v) for v in distinct))

    @classmethod
    def none_of(cls, label: str, values: Collection[str]) -> Matcher:
        """Matches every value except the given ones (and series without the label)."""
        distinct = sorted(set(values))
        if not distinct:
            raise ValueError(f"no values to exclude for label {label!r}")
        if len(distinct) == 1:
            return cls(label, "!=", distinct[0])
        return cls(label, "!~", "|".join(regex_escape(v) for v in distinct))

    @classmethod
    def present(cls, label: str) -> Matcher:
        """The series has the label with a non-empty value."""
        return cls(label, "!=", "")

    @classmethod
    def absent(cls, label: str) -> Matcher:
        """The series lacks the label (PromQL treats an absent label as the empty value)."""
        return cls(label, "=", "")


def namespace_matcher(label: str, namespaces: Collection[str] | None) -> Matcher:
    """Selects series in the given namespaces, or in any namespace when `namespaces` is None."""
    if namespaces is None:
        return Matcher.present(label)
    if not namespaces:
        raise ValueError("an empty set of namespaces selects nothing; pass None for every namespace")
    if any(not ns for ns in namespaces):
        raise ValueError("a namespace name cannot be empty")
    return Matcher.one_of(label, namespaces)


def matchers_text(matchers: Iterable[Matcher]) -> str:
    """Matchers joined for the inside of a selector's braces."""
    return ",".join(str(m) for m in matchers)


def selector(metric: str, matchers: Iterable[Matcher]) -> str:
    """`metric{a="b",...}`."""
    return f"{check_metric_name(metric)}{{{matchers_text(matchers)}}}"


def duration(seconds: float) -> str:
    """A PromQL duration: `1h`, `5m`, `90s`, or `1500ms` when not a whole number of seconds."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be a positive number of seconds, got {seconds!r}")
    millis = round(seconds * 1000)
    if millis <= 0 or abs(millis - seconds * 1000) > 1e-6 * max(1.0, seconds * 1000):
        raise ValueError(f"a duration must be a whole number of milliseconds, got {seconds!r}")
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    if whole % 3600 == 0:
        return f"{whole // 3600}h"
    if whole % 60 == 0:
        return f"{whole // 60}m"
    return f"{whole}s"


def number(value: float) -> str:
    """A PromQL number literal for a finite float, without a needless `.0`."""
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)
