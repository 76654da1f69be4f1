#!/usr/bin/env python3
"""Check the installation: a thin wrapper over `teckochecker doctor`."""

import sys

import _bootstrap  # noqa: F401

from cli import main

if __name__ == "__main__":
    main(["doctor", *sys.argv[1:]])
