"""``python -m lcx``: the same as the ``lcx`` console script."""

import sys

from lcx.cli import main

sys.exit(main())
