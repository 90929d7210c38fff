"""``forecourt detect``: what dispenser protocol, line setting and pumps are on a line.

The installer plugs in a line; detect says what is on it, in the terms of
the protocol registry (every family's descriptor: its line settings,
address range, ``census`` and driver) — no protocol is named here.

1. **Listen** (never a byte written: the line is opened read-only). At the
   brand table's line settings, the common ones first (:mod:`.plan`), the
   line is read for a window and every family's ``census`` judges the
   bytes (:mod:`.judge`): a family counts only with several frames whose
   checksums pass. A master already polling (a POS, an FCC) identifies the
   family, the pumps' addresses and the side of each frame.
2. **Probe**, only when the line was silent and ``--passive`` is not
   given: at each setting, each family with a driver is asked its
   read-only status query — the first request of a fresh driver for that
   address, so its own allow-list (D20) decides the bytes — at every
   address of its range, with its own pacing; a family stops at its first
   framing conflict; the first family whose pumps answer is taken, its
   whole range asked.
3. **Report** (:mod:`.result`): family, setting, addresses, a confidence,
   the evidence (frames as hex and decoded) and the ``[[ports]]`` stanza.

:mod:`.plan` and :mod:`.judge` are pure; :mod:`.line` does the I/O;
:mod:`.engine` runs the steps; :mod:`.cli` is the command and
:mod:`.write` merges stanzas into a config file.

A room beside tools/, at its rank: what an installer runs on the box. May
import: the device, station and remote rooms (the config's files and
checks), collector/'s shared modules (logs, retry, parts), every layer
below collector/. Must not import: the builders (daemon, assembly, cli).
"""
