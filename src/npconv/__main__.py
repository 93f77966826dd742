"""``python -m npconv``: the same as the ``npconv`` command."""

from ._cli import main

raise SystemExit(main())
