"""Command ``python -m lowres.grid``: the code is in :mod:`lowres.study.grids.runner`."""

from lowres.study.grids.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
