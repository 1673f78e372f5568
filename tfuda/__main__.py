"""`python -m tfuda`: the `tfuda` command (`tfuda.command`)."""

import sys

from tfuda.command import main

sys.exit(main())
