"""The exporter corpus: scrapes written from upstream source, and how Prometheus would store them.

Each `tests/corpus/*.prom` file is one scrape of one exporter process after a scenario that began with a
fresh process, headed by the upstream repository, release and files it follows, the quirks a reader must
handle, and the figures (`# expect:`) a correct reader derives. Neither the presets nor the simulator
are its source, so both are checked against it.

To evaluate PromQL over a scrape, `as_series` turns it into the series Prometheus would hold after scraping
it every 15 s for ten minutes: counters (and histogram buckets, sums and counts) grow steadily so that their
increase over the last five minutes is the scraped value, gauges stay at theirs. Target labels are attached
as a scrape configuration would attach them, with `honor_labels` false (collisions renamed `exported_*`) or
true (the exporter's own labels win).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
# The scrape each runtime preset is checked against, and those every runtime shares.
RUNTIME_SCRAPES = {
    "vllm": "vllm-v0.34.0.prom",
    "tgi": "tgi-v3.3.7.prom",
    "triton": "triton-v2.71.0-trtllm-ensemble.prom",
    "sglang": "sglang-v0.5.23.prom",
}
SGLANG_DEVICE_TIMER_SCRAPE = "sglang-v0.5.23-device-timer.prom"
# The same release with an option on that adds families the main scrape lacks.
RUNTIME_VARIANTS = {"sglang": (SGLANG_DEVICE_TIMER_SCRAPE,)}
DCGM_SCRAPE = "dcgm-exporter-4.5.3-4.8.2.prom"
DCGM_MIG_SCRAPE = "dcgm-exporter-4.5.3-4.8.2-mig.prom"
DCGM_DRA_SCRAPE = "dcgm-exporter-4.5.3-4.8.2-dra.prom"
KUBE_STATE_SCRAPE = "kube-state-metrics-v2.20.0.prom"
WINDOW = "5m"  # the window whose increase equals each scraped counter value
EVAL_TIME = "10m"
_STEPS = 40  # 15 s scrapes over ten minutes; 20 of them in the window
_HEADER = re.compile(r"# (corpus|upstream|follows|scenario|quirk|expect)( [^:]*)?: ?(.*)")
_CONTINUATION = re.compile(r"#   (.*)")
_COUNTER_KINDS = {"counter", "histogram", "summary", "gaugehistogram"}
# Text format 0.0.4, read literally: client libraries' parsers rename counters (adding `_total`), while
# Prometheus stores every sample under the name it was exposed with.
_TYPE = re.compile(r"# TYPE (\S+) (\S+)")
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float
    kind: str  # the family's type: counter, gauge, histogram, ...


@dataclass(frozen=True)
class Scrape:
    path: Path
    corpus: str
    upstream: str
    follows: str
    scenario: str
    quirks: tuple[str, ...]
    # `# expect: k=v ...` under "", `# expect pod=ns/name: k=v ...` under "ns/name"
    expect: Mapping[str, Mapping[str, float]]
    families: Mapping[str, str]  # family name as exposed (counters with _total) -> type
    samples: tuple[Sample, ...]

    def family(self, name: str) -> list[Sample]:
        """Samples of one family, histogram/summary parts included."""
        parts = {name, f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        return [s for s in self.samples if s.name in parts]

    def label_names(self, family: str) -> frozenset[str]:
        """Label names of a family's series, without the histogram's `le` and a summary's `quantile`."""
        return frozenset(k for s in self.family(family) for k in s.labels) - {"le", "quantile"}


def files(prefix: str = "") -> list[Path]:
    return sorted(p for p in CORPUS.glob(f"{prefix}*.prom"))


def load(path: Path | str) -> Scrape:
    path = Path(path) if isinstance(path, Path) or "/" in str(path) else CORPUS / str(path)
    text = path.read_text()
    header: dict[str, list[str]] = {}
    expect: dict[str, dict[str, float]] = {}
    last: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(("# HELP", "# TYPE")) or not line.startswith("#"):
            last = None
            continue
        match = _HEADER.fullmatch(line)
        if match:
            key, qualifier, value = match.group(1), (match.group(2) or "").strip(), match.group(3).strip()
            if key == "expect":
                who = qualifier.removeprefix("pod=") if qualifier else ""
                figures = expect.setdefault(who, {})
                for pair in value.split():
                    name, _, number = pair.partition("=")
                    figures[name] = float(number)
                last = None
            else:
                last = header.setdefault(key, [])
                last.append(value)
            continue
        continuation = _CONTINUATION.fullmatch(line)
        if continuation and last is not None:
            last[-1] += " " + continuation.group(1).strip()
    families, samples = parse(text)
    return Scrape(
        path=path,
        corpus=" ".join(header.get("corpus", [""])),
        upstream=" ".join(header.get("upstream", [""])),
        follows=" ".join(header.get("follows", [""])),
        scenario=" ".join(header.get("scenario", [""])),
        quirks=tuple(header.get("quirk", [])),
        expect=expect,
        families=families,
        samples=tuple(samples),
    )


def parse(text: str) -> tuple[dict[str, str], list[Sample]]:
    families: dict[str, str] = {}
    samples: list[Sample] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        typed = _TYPE.fullmatch(line)
        if typed:
            families[typed.group(1)] = typed.group(2)
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.fullmatch(line)
        if not match:
            raise ValueError(f"line {number} is not a sample: {line}")
        name, body, value = match.groups()
        labels: dict[str, str] = {}
        rest = body or ""
        while rest.strip():
            label = _LABEL.match(rest)
            if not label:
                raise ValueError(f"line {number} has malformed labels: {line}")
            labels[label.group(1)] = _UNESCAPE.sub(
                lambda m: "\n" if m.group(1) == "n" else m.group(1), label.group(2)
            )
            rest = rest[label.end() :]
        if name.endswith("_created"):
            continue  # the client library's creation timestamps: no quantity reads them
        family = _family_of(name, families)
        samples.append(Sample(name, labels, float(value), families.get(family, "untyped")))
    return families, samples


def _family_of(name: str, families: Mapping[str, str]) -> str:
    if name in families:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if name.endswith(suffix) and families.get(base) in ("histogram", "summary"):
            return base
    return name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def selector(name: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def attach(labels: Mapping[str, str], target: Mapping[str, str], honor_labels: bool) -> dict[str, str]:
    """The labels Prometheus stores for a scraped series of a target (its `honor_labels` rule)."""
    out = dict(labels)
    for key, value in target.items():
        if key in out:
            if honor_labels:
                continue
            out[f"exported_{key}"] = out.pop(key)
        out[key] = value
    return out


def as_series(
    scrapes: Sequence[tuple[Scrape, Mapping[str, str]]], honor_labels: bool = False
) -> list[tuple[str, str]]:
    """promtool input series for scrapes, each with the target labels its scrape job attaches."""
    series: list[tuple[str, str]] = []
    for scrape, target in scrapes:
        for s in scrape.samples:
            labels = attach(s.labels, target, honor_labels)
            if s.kind in _COUNTER_KINDS and not (s.kind == "summary" and s.name == _summary_base(s)):
                values = f"0+{s.value / (_STEPS / 2)!r}x{_STEPS}"
            else:
                values = f"{s.value!r}x{_STEPS}"
            series.append((selector(s.name, labels), values))
    return series


def _summary_base(s: Sample) -> str:
    # A summary's quantile samples carry the bare family name: they are gauges of a kind.
    return s.name if "quantile" in s.labels else ""
