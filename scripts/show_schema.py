#!/usr/bin/env python3
"""Print the schema read from the live database: a thin wrapper over `teckochecker db schema`."""

import sys

import _bootstrap  # noqa: F401

from cli import main

if __name__ == "__main__":
    main(["db", "schema", *sys.argv[1:]])
