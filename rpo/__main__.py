"""``python -m rpo`` is the ``rpo`` command."""

from rpo.cli import main

raise SystemExit(main())
