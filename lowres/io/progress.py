"""Progress bars that stay readable in a terminal and in batch logs."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    """A tqdm bar (on stderr unless ``file``); refreshes rarely when its stream is not a
    terminal (SLURM logs, ``make demo > log``).

    ``maxinterval`` follows ``mininterval``: at tqdm's default (10 s) its monitor thread
    refreshes a bar that has not printed for 10 s, a line every 10-20 s in a log."""
    stream = kwargs.setdefault("file", sys.stderr)
    interactive = bool(getattr(stream, "isatty", lambda: False)())
    kwargs.setdefault("mininterval", 0.5 if interactive else 30.0)
    kwargs.setdefault("maxinterval", max(kwargs["mininterval"], 10.0))
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
