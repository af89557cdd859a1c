"""``python -m services.openai_sim [flags]``: the same as ``voxrelay sim``."""

import sys

from services.cli import main

sys.exit(main(["sim", *sys.argv[1:]]))
