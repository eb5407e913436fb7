"""A sweep's report, rebuilt from its stored results with no Ray (``python -m diod_ray.sweeps
report DIR``, or the end of every sweep command). What each module writes:

- :mod:`.files`: ``write_report``, which (re)writes every file below into the sweep directory;
- :mod:`.alpha_burnin`: ``table.md`` of an alpha x burn-in sweep (the paper's Table 4(c));
- :mod:`.ablations`: ``table.md`` of an ablation sweep (Table 4(a) and 4(b)), with the teacher's
  activity per branch;
- :mod:`.threshold`: ``table.md`` of a threshold-p search;
- :mod:`.gates`: the preconditions section of ``table.md`` and ``gates.csv``;
- :mod:`.cost`: the "Cost and reuse" section that ends every ``table.md``;
- :mod:`.csv_files`: ``trials.csv`` and ``cells.csv``;
- :mod:`.plots`: ``<kind>.png``.

They read through :mod:`.results` (``sweep.json``, each stage's ``results.json``, a trial's
metrics), compute intervals with :mod:`.stats` and quote the paper's numbers from :mod:`.paper`.
"""
