"""Command ``python -m lowres.tiny_wav2vec2``: the code is in :mod:`lowres.models.tiny_wav2vec2`."""

from lowres.models.tiny_wav2vec2 import main

if __name__ == "__main__":
    raise SystemExit(main())
