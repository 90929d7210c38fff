"""A simulated dispenser on a pty: the ground truth of the HIL tests and the demo.

Independent of ``collector/``: it shares only the protocols/ encoders and
decoders. Run it with ``python -m hil.dispenser`` (see :mod:`hil.dispenser.sim`).
"""
