"""Measured experiments on the embedded world's models (issue 14, docs/world_v2.md).

Each study is a module runnable as ``python -m tools.world_studies.<name>``; it trains small
variants single-threaded, evaluates them with the committed oracle and appends one JSON line per
evaluation to a results file, so an interrupted study keeps what it measured.
"""
