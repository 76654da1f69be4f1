#!/usr/bin/env python3
"""Runs the TeckoChecker CLI, as docs/USER_GUIDE.md writes it: `python teckochecker.py …`."""

from cli import main

if __name__ == "__main__":
    main()
