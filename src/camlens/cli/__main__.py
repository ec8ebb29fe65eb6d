"""``python -m camlens.cli``."""

import sys

from . import main

sys.exit(main())
