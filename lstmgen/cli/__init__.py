"""The `lstmgen` command line: each command parses its options, makes one library call and renders the result.
Data goes to stdout, everything else to stderr. No policy lives here."""

from .app import app, main

__all__ = ["app", "main"]
