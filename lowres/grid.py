"""Command ``python -m lowres.grid``: the code is in :mod:`lowres.study.grid`."""

from lowres.study.grid import main

if __name__ == "__main__":
    raise SystemExit(main())
