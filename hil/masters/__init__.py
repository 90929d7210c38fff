"""Station controllers for the POS simulator (hil/pos.py), one module per
protocol that cannot be polled read-only: they send what a real controller
must (acknowledgements, authorisations), which the collector never does."""
