"""``python -m lfr_cli`` is ``lfr``."""

import sys

from lfr_cli.main import main

sys.exit(main())
