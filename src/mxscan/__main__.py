"""``python -m mxscan``."""

import sys

from .cli import main

sys.exit(main())
