"""A TLS-350-like tank gauge simulator (``python -m hil.atg``, see :mod:`hil.atg.sim`).

Sans-IO core: :class:`hil.atg.console.Console` (commands in, responses out)
over :class:`hil.atg.tank.SimTank` models; :mod:`hil.atg.render` writes the
computer format from the manual, independently of :mod:`protocols.tls`.
"""
