"""Command ``python -m lowres.verify``: the code is in :mod:`lowres.scoring.verify`."""

from lowres.scoring.verify import main

if __name__ == "__main__":
    raise SystemExit(main())
