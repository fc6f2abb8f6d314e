"""The benchmark suite: datasets x label budgets x arms x seeds from a YAML config (``python -m bench``).

`config` reads and expands a config into `spec.RunSpec` s, `data` builds each run's pools, `arms` maps arm kinds to
the functions in `cheap_arms` and `finetune_arms`, `runner` runs what is not done yet and writes one result file
per run and the folder's index, and `report` turns a folder of results into a Markdown table and a plot.
"""
