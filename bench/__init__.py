"""hf_ssl's benchmarks, run from the repository root.

- ``python -m bench --config bench/configs/<name>.yaml``: the benchmark suite (`bench.suite`), datasets x label
  budgets x arms x seeds from a config, one result file per run under ``bench/results/suite/``;
  ``python -m bench report`` renders its table and plot.
- ``python -m bench.<script> [flags]``: the single-purpose scripts. Shared pieces (argument parsing, provenance,
  result writing, summaries, pools, models) are in `bench.common`; results are in ``bench/results/``, listed with
  the command and commit behind each file in ``bench/results/INDEX.md`` (``python -m bench.index`` regenerates it).
"""
