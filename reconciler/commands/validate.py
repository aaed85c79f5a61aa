"""`reconciler validate`: schema and cross-file checks, offline; exit 0 valid, 1 invalid."""

from __future__ import annotations

import sys

from reconciler import validation
from reconciler.config import ValidateConfig


def run(config: ValidateConfig) -> int:
    report = validation.validate_paths(config.paths, check_secrets=config.check_secrets)
    text = validation.format_problems(report, config.format) + "\n"
    # File names and YAML keys may hold anything (undecodable bytes, lone surrogates):
    # escape what the terminal's encoding cannot show rather than fail on it.
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text-only stream (tests capturing output)
        sys.stdout.write(text)
    else:
        encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        sys.stdout.flush()
        buffer.write(text.encode(encoding, errors="backslashreplace"))
        buffer.flush()
    return 0 if report.valid else 1
