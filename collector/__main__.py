"""``python -m collector`` — the same as the ``forecourt`` console script."""

from collector.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
