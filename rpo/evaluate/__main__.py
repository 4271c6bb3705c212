"""``python -m rpo.evaluate alpacaeval|arenahard ...`` (see :mod:`rpo.evaluate.cli`)."""

import sys

from rpo.evaluate.cli import main

sys.exit(main())
