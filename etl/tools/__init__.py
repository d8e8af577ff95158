"""Tools around the ETL, not part of a run: the demo source builder (``etl demo-data``) and the benchmarks
(``make bench``, ``make bench-clinic``).

The runtime (runner, phases, dialects, tracking) never imports this package; the CLI imports
:mod:`etl.tools.demo` only for ``etl demo-data``. It ships in the wheel so those commands work installed.
"""
