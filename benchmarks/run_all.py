"""Run every benchmark in turn (`make bench`); each writes results/<name>.json and .md."""

from __future__ import annotations

import importlib

BENCHMARKS = ("bench_localcloud", "bench_training", "bench_training_job", "bench_inference",
              "bench_serving", "bench_transfer",
              "bench_predict_load", "bench_autoscaling", "bench_run", "bench_preflight",
              "bench_signatures", "bench_enforcement", "bench_rollback", "bench_gate")


def main() -> None:
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        importlib.import_module(f"benchmarks.{name}").main()


if __name__ == "__main__":
    main()
