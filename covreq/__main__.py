"""``python -m covreq``: the command line."""
import sys

from covreq.cli import main

sys.exit(main())
