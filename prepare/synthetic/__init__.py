"""The synthetic VoxCeleb-shaped corpus (``python -m prepare.synthetic``).

``corpus`` lays out speakers, sessions and files like the official archives; ``voices``
(espeak-ng speakers), ``text``, ``channel`` (per-session recording channels), ``trials``
(VoxCeleb1-style lists) and ``io`` (atomic audio writes) make its parts.
"""

from prepare.synthetic.corpus import PRESETS, generate

__all__ = ["PRESETS", "generate"]
