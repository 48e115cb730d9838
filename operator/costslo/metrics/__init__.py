"""Prometheus side of an evaluation: PromQL building, the HTTP client and the batched window fetch.

Modules: `promql` (label escaping, matchers), `prometheus` (HTTP client), `queries` (the PromQL of each
quantity), `window` (one query per quantity for every pod in scope), `histogram` (quantiles from buckets).
Nothing is re-exported here, so importing one module does not pull in the others.
"""
