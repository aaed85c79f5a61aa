"""`reconciler validate`: schema and cross-file checks, offline; exit 0 valid, 1 invalid."""

from __future__ import annotations

import argparse
import sys

from reconciler import validation


def run(args: argparse.Namespace) -> int:
    report = validation.validate_paths(args.paths, check_secrets=args.check_secrets)
    sys.stdout.write(validation.format_problems(report, args.format) + "\n")
    return 0 if report.valid else 1
