"""Command ``python -m lowres.embed``: the code is in :mod:`lowres.scoring.embed_wav_list`."""

from lowres.scoring.embed_wav_list import main

if __name__ == "__main__":
    raise SystemExit(main())
