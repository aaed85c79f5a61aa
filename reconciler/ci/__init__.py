"""Glue for CI systems: the steps of the GitHub Action (`action.yml`), testable locally."""
