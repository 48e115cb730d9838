"""Label values reach PromQL escaped: no namespace or pod name can change what a query selects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costslo.metrics.promql import (
    Matcher,
    check_label_name,
    check_metric_name,
    duration,
    namespace_matcher,
    number,
    quote,
    regex_escape,
    selector,
)
from tests.support.promtool import Case, evaluate

pytestmark = pytest.mark.unit

HOSTILE = [
    'a"}',
    '"} or vector(1) or {a="',
    'ml", namespace=~".*',
    "\\",
    "\\\\",
    'back\\"slash',
    ".*",
    ".+",
    "a|b",
    "|",
    "(?i)ML",
    "[a-z]+",
    "^ml$",
    "ml\nnamespace",
    "tab\there",
    "\r",
    "\x00nul",
    "\x7f",
    "\ufffd",
    "emoji-\U0001f600",
    "$1",
    "{}",
    "#comment",
    "'single'",
    "`raw`",
    "",
]

# Text a Kubernetes name could never hold, but a PromQL string must still carry: anything except lone
# surrogates, which no UTF-8 query can contain.
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)

_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def read_string(text: str, pos: int) -> tuple[str, int]:
    """Reads a double-quoted PromQL string starting at `pos` the way the PromQL lexer does (Go escapes)."""
    assert text[pos] == '"', f"expected a string at {pos}: {text!r}"
    out: list[str] = []
    i = pos + 1
    while True:
        if i >= len(text):
            raise AssertionError("unterminated string")
        ch = text[i]
        if ch == "\n":
            raise AssertionError("raw newline in a string")
        if ch == "\ufffd":
            raise AssertionError("PromQL reads a raw U+FFFD as an encoding error")
        if ch == '"':
            return "".join(out), i + 1
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = text[i + 1]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc in "\\\"'":
            out.append(esc)
            i += 2
        elif esc == "u":
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
        elif esc == "U":
            out.append(chr(int(text[i + 2 : i + 10], 16)))
            i += 10
        elif esc == "x":
            out.append(chr(int(text[i + 2 : i + 4], 16)))
            i += 4
        else:
            raise AssertionError(f"unknown escape \\{esc}")


_MATCHER_HEAD = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)(=~|!~|!=|=)")
_SELECTOR_HEAD = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\{")


def parse_selector(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    """A strict parser of `name{label op "value", ...}`: it must consume the whole text."""
    head = _SELECTOR_HEAD.match(text)
    assert head, text
    pos, matchers = head.end(), []
    while text[pos] != "}":
        m = _MATCHER_HEAD.match(text, pos)
        assert m, f"no matcher at {pos}: {text!r}"
        value, pos = read_string(text, m.end())
        matchers.append((m.group(1), m.group(2), value))
        if text[pos] == ",":
            pos += 1
    assert pos == len(text) - 1, f"text after the selector: {text[pos:]!r}"
    return head.group(1) or "", matchers


@given(TEXT)
def test_quote_reads_back_as_the_same_value(value: str) -> None:
    literal = quote(value)
    decoded, end = read_string(literal, 0)
    assert decoded == value
    assert end == len(literal)  # the literal ends exactly where the value does


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_value_stays_one_equality_matcher(value: str) -> None:
    text = selector("up", [Matcher.equal("namespace", value), Matcher.present("pod")])
    assert parse_selector(text) == ("up", [("namespace", "=", value), ("pod", "!=", "")])


@given(TEXT)
def test_any_value_stays_one_equality_matcher(value: str) -> None:
    text = selector("vllm:request_success_total", [Matcher.equal("pod", value)])
    assert parse_selector(text) == ("vllm:request_success_total", [("pod", "=", value)])


@given(TEXT, TEXT)
def test_regex_escape_matches_exactly_the_value(value: str, other: str) -> None:
    pattern = regex_escape(value)
    assert re.fullmatch(pattern, value, flags=re.DOTALL)
    if other != value:
        assert not re.fullmatch(pattern, other, flags=re.DOTALL)


@pytest.mark.parametrize("value", [v for v in HOSTILE if v])
def test_hostile_value_matches_only_itself_as_regex(value: str) -> None:
    text = selector("up", [Matcher.one_of("namespace", [value, "ml"])])
    _, [(label, op, pattern)] = parse_selector(text)
    assert (label, op) == ("namespace", "=~")
    for candidate in (value, "ml"):
        assert re.fullmatch(pattern, candidate, flags=re.DOTALL)
    for outsider in ("kube-system", "mlx", "", "a", "b", value + "x", "x" + value):
        if outsider not in (value, "ml"):
            assert not re.fullmatch(pattern, outsider, flags=re.DOTALL), outsider


@given(st.sets(TEXT.filter(bool), min_size=1, max_size=6), TEXT)
def test_set_matcher_selects_exactly_the_set(values: set[str], other: str) -> None:
    _, [(label, op, value)] = parse_selector(selector("up", [namespace_matcher("namespace", values)]))
    assert label == "namespace"
    if len(values) == 1:
        assert (op, value) == ("=", next(iter(values)))
        return
    assert op == "=~"
    for v in values:
        assert re.fullmatch(value, v, flags=re.DOTALL)
    assert bool(re.fullmatch(value, other, flags=re.DOTALL)) == (other in values)


def test_set_matcher_is_sorted_and_deduplicated() -> None:
    assert str(Matcher.one_of("namespace", ["b", "a", "b"])) == 'namespace=~"a|b"'
    assert str(Matcher.one_of("namespace", ["a.b"])) == 'namespace="a.b"'
    assert str(Matcher.one_of("namespace", ["a.b", "c"])) == 'namespace=~"a\\\\.b|c"'
    assert str(Matcher.none_of("finished_reason", ["stop", "length"])) == 'finished_reason!~"length|stop"'


def test_all_namespaces_means_the_label_is_set() -> None:
    assert str(namespace_matcher("namespace", None)) == 'namespace!=""'


def test_empty_namespace_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="selects nothing"):
        namespace_matcher("namespace", [])
    with pytest.raises(ValueError, match="cannot be empty"):
        namespace_matcher("namespace", ["ml", ""])


def test_presence_matchers() -> None:
    assert str(Matcher.present("exported_pod")) == 'exported_pod!=""'
    assert str(Matcher.absent("exported_pod")) == 'exported_pod=""'


@pytest.mark.parametrize("name", ["", "1pod", "pod-name", 'a"', "a}", "a b", "exported:pod", "é"])
def test_bad_label_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="label name"):
        check_label_name(name)
    with pytest.raises(ValueError, match="label name"):
        Matcher.equal(name, "x")


def test_bad_metric_names_and_operators_are_refused() -> None:
    assert check_metric_name("vllm:request_success_total") == "vllm:request_success_total"
    with pytest.raises(ValueError, match="metric name"):
        selector('up{a="b"} or vector(1)', [])
    with pytest.raises(ValueError, match="operator"):
        Matcher("pod", "==", "x")  # type: ignore[arg-type]


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        quote("a\ud800b")


def test_control_characters_travel_escaped() -> None:
    assert quote('a"b\\c\nd\te\x01\ufffd') == '"a\\"b\\\\c\\nd\\te\\u0001\\ufffd"'


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3600, "1h"), (7200, "2h"), (300, "5m"), (90, "90s"), (5, "5s"), (1.5, "1500ms"), (0.25, "250ms")],
)
def test_durations(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, -1, float("inf"), float("nan"), 0.0001, 1.0005])
def test_bad_durations_are_refused(seconds: float) -> None:
    with pytest.raises(ValueError):
        duration(seconds)


def test_numbers() -> None:
    assert number(1e6) == "1000000"
    assert number(100.0) == "100"
    assert number(0.5) == "0.5"
    with pytest.raises(ValueError):
        number(float("inf"))


def test_hostile_values_select_exactly_in_prometheus(tmp_path: Path) -> None:
    """Prometheus' own parser and engine: each hostile value selects its one series and nothing else."""
    values = [v for v in HOSTILE if v]
    series = [(f"up{{namespace={quote(v)}}}", "1x10") for v in [*values, "bystander"]]
    one = [("{}", 1.0)]
    cases: list[Case] = []
    for v in values:
        cases.append((f"count({selector('up', [Matcher.equal('namespace', v)])})", one))
        cases.append((f"count({selector('up', [Matcher.one_of('namespace', [v, 'absent'])])})", one))
    cases.append((f"count({selector('up', [Matcher.one_of('namespace', values)])})", [("{}", len(values))]))
    cases.append((f"count({selector('up', [Matcher.none_of('namespace', values)])})", one))
    evaluate(tmp_path, series, cases, eval_time="1m")
