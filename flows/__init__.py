"""Prefect flows and the `pdflow` command line: wiring only, no business logic."""
