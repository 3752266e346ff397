"""The errors of the preparation stages.

Every bad input (missing or malformed meta file, a trial naming a missing file, an empty
subset, a published list naming keys the data lacks) raises :class:`PrepareError` with a
message that names the file or value; an unreadable or wrong-rate audio file raises
lowres.io's ``AudioFileError`` and a malformed manifest its ``ListError``, the readers
that training shares.  Each ``python -m prepare.*`` command turns any of
:data:`USER_ERRORS` into ``error: <message>`` on stderr and exit status 2.
"""

from lowres.io.audio_headers import AudioFileError
from lowres.io.lists import ListError


class PrepareError(Exception):
    """A problem with the input data that the user has to fix."""


class PrepareWarning(UserWarning):
    """The data could not supply everything asked for (e.g. fewer trials)."""


USER_ERRORS = (PrepareError, ListError, AudioFileError)
