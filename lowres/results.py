"""Command ``python -m lowres.results``: the code is in :mod:`lowres.study.results.report`."""

from lowres.study.results.report import main

if __name__ == "__main__":
    raise SystemExit(main())
