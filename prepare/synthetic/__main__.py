"""``python -m prepare.synthetic``: see :mod:`prepare.synthetic.corpus`."""

from prepare.synthetic.corpus import main

main()
