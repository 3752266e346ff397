"""Command ``python -m lowres.demo``: the code is in :mod:`lowres.study.demo`."""

from lowres.study.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
