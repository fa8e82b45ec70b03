"""The real server's metrics and its Prometheus page (util/prometheus_exporter.cc).

Names keep TensorFlow's spelling (`/tensorflow/serving/request_count`) and are exported
with every character outside `[a-zA-Z0-9_]` replaced by `:`. The page has `# TYPE` lines
and no `# HELP`, and counters carry no `_total` suffix, which is why this is not
prometheus_client: its exposition renames counters.
"""
from __future__ import annotations

import bisect
import re
import threading
from collections import defaultdict


def exponential(scale: float, growth: float, count: int) -> list[float]:
    """monitoring::Buckets::Exponential: scale * growth**i, then +Inf."""
    return [scale * growth**i for i in range(count)] + [float("inf")]


def _number(value: float) -> str:
    """absl::StrCat of a double: six significant digits, no trailing zeros."""
    return "%g" % value


class Counter:
    def __init__(self, name: str, labels: tuple[str, ...] = ()):
        self.name, self.labels = name, labels
        self.values: dict[tuple, int] = defaultdict(int)
        self.lock = threading.Lock()

    def inc(self, *label_values: str, by: int = 1) -> None:
        with self.lock:
            self.values[label_values] += by

    def lines(self, name: str) -> list[str]:
        out = [f"# TYPE {name} counter"]
        with self.lock:
            for values, count in sorted(self.values.items()):
                out.append(f"{name}{{{_labels(self.labels, values)}}} {count}")
        return out


class Histogram:
    def __init__(self, name: str, labels: tuple[str, ...], buckets: list[float]):
        self.name, self.labels, self.limits = name, labels, buckets
        self.cells: dict[tuple, list] = {}
        self.lock = threading.Lock()

    def observe(self, value: float, *label_values: str) -> None:
        with self.lock:
            cell = self.cells.setdefault(label_values, [[0] * len(self.limits), 0.0])
            cell[0][bisect.bisect_left(self.limits, value)] += 1
            cell[1] += value

    def lines(self, name: str) -> list[str]:
        out = [f"# TYPE {name} histogram"]
        with self.lock:
            for values, (buckets, total) in sorted(self.cells.items()):
                labels = _labels(self.labels, values)
                prefix = f"{name}_bucket{{{labels}{',' if labels else ''}"
                cumulative = 0
                for limit, count in zip(self.limits, buckets):
                    cumulative += count
                    le = "+Inf" if limit == float("inf") else _number(limit)
                    out.append(f'{prefix}le="{le}"}} {cumulative}')
                out.append(f"{name}_sum{{{labels}}} {_number(total)}")
                out.append(f"{name}_count{{{labels}}} {cumulative}")
        return out


def _labels(names: tuple[str, ...], values: tuple) -> str:
    return ",".join(f'{re.sub("[^a-zA-Z0-9]", "_", n)}="{_escape(v)}"' for n, v in zip(names, values))


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_name(name: str) -> str:
    name = re.sub("[^a-zA-Z0-9_]", ":", name)
    return "_" + name if name[:1].isdigit() else name


LATENCY = exponential(10, 1.8, 33)  # microseconds, as servables/tensorflow/util.cc
BATCH = exponential(1, 2, 14)


class Metrics:
    """Every metric the server records, one instance per server."""

    def __init__(self):
        self.request_count = Counter("/tensorflow/serving/request_count", ("model_name", "status"))
        self.request_latency = Histogram("/tensorflow/serving/request_latency",
                                         ("model_name", "API", "entrypoint"), LATENCY)
        self.runtime_latency = Histogram("/tensorflow/serving/runtime_latency",
                                         ("model_name", "API", "runtime"), LATENCY)
        self.warmup_latency = Histogram("/tensorflow/serving/model_warmup_latency",
                                        ("model_path", "status"), exponential(10, 1.8, 33))
        self.input_batch_size = Histogram("/tensorflow/serving/batching_session/input_batch_size", (), BATCH)
        self.processed_batch_size = Histogram("/tensorflow/serving/batching_session/processed_batch_size",
                                              (), BATCH)
        self.queuing_latency = Histogram("/tensorflow/serving/batching_session/queuing_latency",
                                         ("thread_pool_name",), exponential(100, 1.2, 52))
        self.wrapped_run_count = Counter("/tensorflow/serving/batching_session/wrapped_run_count")
        self.load_attempt_count = Counter("/tensorflow/cc/saved_model/load_attempt_count",
                                          ("model_path", "status"))

    def all(self) -> list:
        return [value for value in vars(self).values() if isinstance(value, (Counter, Histogram))]

    def page(self) -> str:
        """The text exposition the real server's PrometheusExporter writes."""
        lines: list[str] = []
        for metric in sorted(self.all(), key=lambda m: m.name):
            if isinstance(metric, Counter) and not metric.values or isinstance(metric, Histogram) and not metric.cells:
                continue
            lines += metric.lines(prometheus_name(metric.name))
        return "\n".join(lines) + "\n"
