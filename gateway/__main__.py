"""``python -m gateway --policy FILE [--listen HOST:PORT] [--workers N]``."""

import sys

from gateway.cli import main

sys.exit(main())
