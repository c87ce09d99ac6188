"""``python -m launcher``: see ``launcher.up``."""

import sys

from launcher.up import main

sys.exit(main())
