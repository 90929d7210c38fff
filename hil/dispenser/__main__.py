"""``python -m hil.dispenser``: see :mod:`hil.dispenser.sim`."""

from hil.dispenser.sim import main

raise SystemExit(main())
