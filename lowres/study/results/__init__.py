"""The study's results from its run folders (``python -m lowres.results``): ``frame`` reads
the runs into one frame (results.csv), ``tables`` summarises it, ``markdown`` writes
results.md, ``figures`` draws the figures, ``report`` writes them all."""
