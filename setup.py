"""Build step: the product's files that live beside the package in the repository (its documented
layout) go into the wheel as package data, under etl/_data/ (etl/resources.py finds them there)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("sql_templates", "migrations_mysql", "migrations_postgres", "dbt", "alembic.ini")
# What dbt and Python leave in a working copy is not part of the product.
LEFTOVERS = shutil.ignore_patterns("__pycache__", "*.pyc", "target", "logs", "dbt_packages", ".user.yml")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout itself
            return
        data = Path(self.build_lib) / "etl" / "_data"
        data.mkdir(parents=True, exist_ok=True)
        for name in SHIPPED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, data / name, ignore=LEFTOVERS, dirs_exist_ok=True)
            else:
                shutil.copy2(source, data / name)


setup(cmdclass={"build_py": BuildWithData})
