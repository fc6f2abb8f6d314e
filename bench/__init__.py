"""hf_ssl's benchmark scripts, each run from the repository root as ``python -m bench.<script> [flags]``.

Shared pieces (argument parsing, provenance, result writing, summaries) are in `bench.common`; results are in
``bench/results/``, listed with the command and commit behind each file in ``bench/results/INDEX.md``
(``python -m bench.index`` regenerates it).
"""
