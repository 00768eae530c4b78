"""`python -m cli serve ...`: the same as the `trident` console script."""

import sys

from cli.main import main

sys.exit(main())
