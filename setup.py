"""Builds the optional native walk; everything else about the package is in pyproject.toml.

The walk in C (src/twofold/fsinfo/walk_c/, docs/DESIGN.md "The walk in C") is built on
Linux where a C compiler and sqlite3.h are found; where it cannot be built, the build goes
on without it and twofold plans in Python, with the same results.
"""

import sys

from setuptools import Extension, setup

WALK = "src/twofold/fsinfo/walk_c"
native = [Extension("twofold.fsinfo._walk",
                    [f"{WALK}/{part}.c" for part in ("module", "listing", "scan", "rows", "folder", "read")],
                    depends=[f"{WALK}/walk.h"], libraries=["sqlite3"], optional=True)]

setup(ext_modules=native if sys.platform.startswith("linux") else [])
