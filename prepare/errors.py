"""The errors of the preparation stages.

Every bad input (missing or malformed meta file, a trial naming a missing file, an empty
subset, a published list naming keys the data lacks) raises :class:`PrepareError` with a
message that names the file or value; an unreadable or wrong-rate audio file raises
lowres.io's ``AudioFileError`` and a malformed manifest its ``ListError``, the readers
that training shares.  Each ``python -m prepare.*`` command turns any of
:data:`USER_ERRORS` into ``error: <message>`` on stderr and exit status 2; so do the
recipes and lowres's commands, for which the family also holds an output path that cannot
be written (lowres.io.outputs) and a ``--device`` that is not there (lowres.io.device).
"""

from lowres.io.audio_headers import AudioFileError
from lowres.io.device import DeviceError
from lowres.io.lists import ListError
from lowres.io.outputs import OutputPathError


class PrepareError(Exception):
    """A problem with the input data that the user has to fix."""


class PrepareWarning(UserWarning):
    """The data could not supply everything asked for (e.g. fewer trials)."""


USER_ERRORS = (PrepareError, ListError, AudioFileError, OutputPathError, DeviceError)
