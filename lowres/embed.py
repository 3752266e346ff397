"""Command ``python -m lowres.embed``: the code is in :mod:`lowres.scoring.embed`."""

from lowres.scoring.embed import main

if __name__ == "__main__":
    raise SystemExit(main())
