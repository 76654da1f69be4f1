#!/usr/bin/env python3
"""Create .env (--create-env) and migrate the database; --reset drops and recreates everything.

A thin wrapper over `teckochecker db init` and `teckochecker db reset`.
"""

import sys

import _bootstrap  # noqa: F401

from cli import main

if __name__ == "__main__":
    arguments = sys.argv[1:]
    if "--reset" in arguments:
        main(["db", "reset", *(a for a in arguments if a != "--reset")])
    else:
        main(["db", "init", *arguments])
