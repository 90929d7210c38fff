"""``python -m hil.atg``: see :mod:`hil.atg.sim`."""

from hil.atg.sim import main

raise SystemExit(main())
