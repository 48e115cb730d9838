"""A tenant's PromQL confined to the pods of its own namespace.

A custom query runs with the operator's Prometheus credentials, so a selector outside the CostSLO's namespace
would read another team's series, and relabelling could pass them off as the team's own. The query is parsed
(promql-parser, a full PromQL grammar) and refused unless every selector, in every `or` group of its
matchers, carries `$__pods`, which the operator fills with the namespace matcher; and unless no function
writes a pod-identifying label (`label_replace`, `label_join`, `count_values`) or joins in other series'
labels (`info`). Checking the parsed expression, rather than injecting a matcher into the text, keeps the
query the author wrote, so Prometheus' errors point at their own text.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterator
from typing import Any

import promql_parser

PODS_PLACEHOLDER = "$__pods"
WINDOW_PLACEHOLDER = "$__window"
# Deeper than any query a person writes; the walk and the parser stay far from any recursion limit.
MAX_DEPTH = 64
# Functions that would write a label from an argument: label_replace(v, dst, ...), label_join(v, dst, ...).
_RELABELLING = {"label_replace", "label_join"}
# Joins labels of series the query never selected (Prometheus 3's info()).
_REFUSED = {"info"}


class ConfinementError(ValueError):
    """A custom query that could read or claim series outside its namespace; the message says which part."""


def check_confined(key: str, text: str, protected: Collection[str]) -> None:
    """Raises ConfinementError unless every selector of `text` is limited by `$__pods` and nothing in it
    writes one of the `protected` labels (the namespace and pod labels results are attributed by)."""
    # A name and value the author cannot know stand in for $__pods, so no matcher they write can pass
    # for it; label names with two leading underscores are Prometheus' own, and refused anyway.
    mark = (f"__costslo_{secrets.token_hex(8)}", secrets.token_hex(8))
    parsed = text.replace(PODS_PLACEHOLDER, f'{mark[0]}="{mark[1]}"').replace(WINDOW_PLACEHOLDER, "5m")
    try:
        expr = promql_parser.parse(parsed)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the parser's panics (pyo3) are BaseException: a bad query, not a crash
        raise ConfinementError(f"custom query {key} is not PromQL: {str(exc)[:200]}") from None
    for node in _nodes(key, expr):
        if isinstance(node, promql_parser.VectorSelector):
            _check_selector(key, node, mark)
        elif isinstance(node, promql_parser.Call):
            _check_call(key, node, protected)
        elif isinstance(node, promql_parser.AggregateExpr) and str(node.op) == "count_values":
            label = node.param.val if isinstance(node.param, promql_parser.StringLiteral) else None
            if label is None or label in protected:
                raise ConfinementError(
                    f"custom query {key} writes the label {label!r} with count_values; the namespace and "
                    f"pod labels ({', '.join(sorted(protected))}) must stay the series' own"
                )


def _check_selector(key: str, selector: promql_parser.VectorSelector, mark: tuple[str, str]) -> None:
    groups = [selector.matchers.matchers, *selector.matchers.or_matchers]
    for group in groups:
        for m in group:
            if m.name.startswith("__") and m.name not in ("__name__", mark[0]):
                raise ConfinementError(f"custom query {key} matches on the reserved label {m.name}")
        if not any(
            m.name == mark[0] and m.value == mark[1] and m.op == promql_parser.MatchOp.Equal for m in group
        ):
            name = selector.name or "a selector"
            raise ConfinementError(
                f"custom query {key}: {name} is not limited to the CostSLO's namespace; put "
                f"{PODS_PLACEHOLDER} in every selector (and in each `or` group of its matchers), e.g. "
                f"{name}{{{PODS_PLACEHOLDER}}}"
            )


def _check_call(key: str, call: promql_parser.Call, protected: Collection[str]) -> None:
    name = call.func.name
    if name in _REFUSED:
        raise ConfinementError(f"custom query {key} uses {name}(), which reads series outside the query")
    if name in _RELABELLING:
        target = call.args[1] if len(call.args) > 1 else None
        label = target.val if isinstance(target, promql_parser.StringLiteral) else None
        if label is None or label in protected:
            raise ConfinementError(
                f"custom query {key} rewrites the label {label!r} with {name}(); the namespace and pod "
                f"labels ({', '.join(sorted(protected))}) must stay the series' own"
            )


def _children(expr: Any) -> list[Any]:
    if isinstance(expr, promql_parser.BinaryExpr):
        return [expr.lhs, expr.rhs]
    if isinstance(expr, promql_parser.AggregateExpr):
        return [expr.expr] + ([expr.param] if expr.param is not None else [])
    if isinstance(expr, promql_parser.Call):
        return list(expr.args)
    if isinstance(expr, promql_parser.MatrixSelector):
        return [expr.vector_selector]
    if isinstance(expr, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr):
        return [expr.expr]
    return []


def _nodes(key: str, expr: Any) -> Iterator[Any]:
    """Every node of a parsed expression, depth first, without recursion; too deep a nesting is refused."""
    stack: list[tuple[Any, int]] = [(expr, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfinementError(f"custom query {key} nests deeper than {MAX_DEPTH} levels")
        yield node
        stack.extend((child, depth + 1) for child in reversed(_children(node)))
