"""`python -m reconciler` behaves exactly like the `reconciler` console script."""

import sys

from reconciler.cli import main

sys.exit(main())
