"""``python -m gossamer``: the same command line as the ``gossamer`` script."""

from gossamer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
