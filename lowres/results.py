"""Command ``python -m lowres.results``: the code is in :mod:`lowres.study.results`."""

from lowres.study.results import main

if __name__ == "__main__":
    raise SystemExit(main())
