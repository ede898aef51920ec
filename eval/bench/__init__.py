"""Benchmark scripts, one module per benchmark: `lumenrec bench NAME` runs `python -m lumenrec.eval.bench.NAME`.
Each writes docs/results/<name>.json and its section of docs/benchmarks.md."""
