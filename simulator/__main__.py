"""`python -m simulator`: see simulator._cli."""

from __future__ import annotations

import sys

from ._cli import main

sys.exit(main())
