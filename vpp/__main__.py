"""``python -m vpp`` is the same as the ``vpp`` console script."""

from vpp.cli import main

raise SystemExit(main())
