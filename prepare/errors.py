"""The one exception of the preparation stages.

Every bad input (missing or malformed meta file, a trial naming a missing
file, an unreadable or wrong-rate audio file, an empty subset, a published
list naming keys the data lacks) raises :class:`PrepareError` with a message
that names the file or value.  ``python -m prepare.voxceleb`` turns it into
``error: <message>`` on stderr and exit status 2.
"""


class PrepareError(Exception):
    """A problem with the input data that the user has to fix."""


class PrepareWarning(UserWarning):
    """The data could not supply everything asked for (e.g. fewer trials)."""
