"""The package's layering: the runtime (everything but etl.tools, etl.airflow and the CLI's entry points)
never imports the tools (demo source builder, benchmarks)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from etl import PROJECT_ROOT


def test_the_runtime_never_imports_the_tools():
    script = textwrap.dedent("""
        import importlib, pkgutil, sys, etl
        for module in pkgutil.walk_packages(etl.__path__, "etl."):
            if not module.name.startswith(("etl.tools", "etl.airflow", "etl.__main__")):
                importlib.import_module(module.name)
        import etl.cli
        etl.cli.build_parser().parse_args(["demo-data"])
        print(sorted(m for m in sys.modules if m.startswith("etl.tools.")))  # walking imports the bare package
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
