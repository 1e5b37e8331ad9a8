"""`python -m cni`: the `bond` executable (see cni.cli)."""

import sys

from cni.cli import main

sys.exit(main())
