"""Synthetic speakers: random espeak-ng voices plus a vocal-tract warp.

A speaker is a custom espeak-ng voice variant (pitch, formant scales, roughness,
Klatt voice source, consonant strength, speaking rate, accent) and a resampling
warp factor (0.88-1.12: playing the synthesis faster or slower moves pitch and
formants together, like a shorter or longer vocal tract). espeak-ng's built-in
variants give only ~10-14 distinct speakers; random variant files give an open
number. espeak-ng scans at most ~349 voice files, so every synthesis call gets
its own tiny data folder (links to the system data, one variant file).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from functools import lru_cache
from math import ceil
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from lowres.io.audio_headers import SAMPLE_RATE
from prepare.synthetic.text import random_text

# Accents (espeak-ng English language voices) for the nationalities the corpus uses.
ACCENTS = {
    "USA": "en-US",
    "UK": "en-GB-x-rp",
    "Canada": "en-US-nyc",
    "Ireland": "en-GB-x-gbcwmd",
    "Australia": "en",
    "Scotland": "en-GB-scotland",
    "Jamaica": "en-029",
    "India": "en-GB-x-gbclan",
}
NATIONALITIES = tuple(ACCENTS)
_KLATT = (0, 1, 2, 3, 4, 6)  # 0 = espeak's default (non-Klatt) synthesiser


@lru_cache(maxsize=1)
def espeak_data_dir() -> Path:
    """The system espeak-ng data folder (asks espeak-ng itself)."""
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().split("Data at:")[-1].strip())


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker's voice; every field is a synthesis parameter."""

    gender: str  # "m" | "f"
    nationality: str
    pitch_base: int  # Hz, espeak variant `pitch base range`
    pitch_range: int
    formants: tuple  # ((freq%, height%, width%) for formants 0..8)
    roughness: int  # 0-7
    flutter: int
    klatt: int
    consonants: int
    words_per_minute: int
    word_gap: int  # espeak -g, units of 10 ms
    warp: float  # vocal-tract warp by resampling

    def variant_file(self) -> str:
        lines = ["language variant", "name synth",
                 f"gender {'male' if self.gender == 'm' else 'female'}",
                 f"pitch {self.pitch_base} {self.pitch_base + self.pitch_range}"]
        lines += [f"formant {i} {f} {h} {w}" for i, (f, h, w) in enumerate(self.formants)]
        lines += [f"roughness {self.roughness}", f"flutter {self.flutter}",
                  f"consonants {self.consonants}"]
        if self.klatt:
            lines.append(f"klatt {self.klatt}")
        return "\n".join(lines) + "\n"

    def describe(self) -> dict:
        return {k: (repr(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def random_voice(rng: np.random.Generator, gender: str, nationality: str) -> Voice:
    """A random voice of the given gender; male and female ranges overlap a little."""
    if gender == "m":
        pitch_base, pitch_range = int(rng.integers(65, 125)), int(rng.integers(20, 60))
        formant_scale, warp = rng.uniform(86, 104), rng.uniform(0.88, 1.02)
    else:
        pitch_base, pitch_range = int(rng.integers(150, 240)), int(rng.integers(30, 90))
        formant_scale, warp = rng.uniform(100, 120), rng.uniform(0.98, 1.12)
    formants = tuple(
        (int(formant_scale + rng.normal(0, 5)), int(rng.uniform(70, 130)),
         int(rng.uniform(80, 130)))
        for _ in range(9)
    )
    return Voice(
        gender=gender, nationality=nationality, pitch_base=pitch_base, pitch_range=pitch_range,
        formants=formants, roughness=int(rng.integers(0, 6)), flutter=int(rng.integers(0, 40)),
        klatt=int(rng.choice(_KLATT)), consonants=int(rng.integers(70, 130)),
        words_per_minute=int(rng.integers(135, 200)), word_gap=int(rng.integers(0, 4)),
        warp=round(float(warp), 3),
    )


def make_espeak_folder(workdir: Path, voice: Voice) -> Path:
    """A private espeak-ng data folder holding only `voice` (as variant `synth`)."""
    root = workdir / "espeak"
    data = root / "espeak-ng-data"
    (data / "voices" / "!v").mkdir(parents=True, exist_ok=True)
    (data / "lang" / "gmw").mkdir(parents=True, exist_ok=True)
    system = espeak_data_dir()
    for name in ("phontab", "phonindex", "phondata", "intonations", "en_dict"):
        if not (data / name).exists():
            os.symlink(system / name, data / name)
    for accent in set(ACCENTS.values()):
        if not (data / "lang" / "gmw" / accent).exists():
            os.symlink(system / "lang" / "gmw" / accent, data / "lang" / "gmw" / accent)
    (data / "voices" / "!v" / "synth").write_text(voice.variant_file())
    return root


def synthesize(voice: Voice, text: str, workdir: Path, speed_factor: float = 1.0,
               pitch: int = 50) -> np.ndarray:
    """Speak `text` with `voice`; float32 mono at 16 kHz after the vocal-tract warp."""
    folder = make_espeak_folder(workdir, voice)
    text_file, wav_file = workdir / "text.txt", workdir / "espeak.wav"
    text_file.write_text(text)
    accent = ACCENTS[voice.nationality]
    # `-w file`, not --stdout: espeak-ng writes a wrong size into a piped WAV header.
    subprocess.run(
        ["espeak-ng", f"--path={folder}", "-v", f"{accent}+synth",
         "-s", str(int(voice.words_per_minute * speed_factor)), "-p", str(pitch),
         "-g", str(voice.word_gap), "-f", str(text_file), "-w", str(wav_file)],
        check=True, capture_output=True,
    )
    audio, rate = sf.read(wav_file, dtype="float32")
    # Treat the synthesis as sampled at rate * warp and resample to 16 kHz.
    down = int(round(rate * voice.warp / 50))
    return resample_poly(audio, SAMPLE_RATE // 50, down).astype(np.float32)


def speak_for(voice: Voice, seconds: float, rng: np.random.Generator, workdir: Path,
              speed_factor: float = 1.0, pitch: int = 50) -> np.ndarray:
    """At least `seconds` of continuous speech of random sentences (16 kHz)."""
    words_per_second = voice.words_per_minute * speed_factor * voice.warp / 60
    pieces, total = [], 0
    while total < seconds * SAMPLE_RATE:
        missing = seconds - total / SAMPLE_RATE
        n_words = ceil(missing * words_per_second * 1.1) + 3
        piece = synthesize(voice, random_text(rng, n_words), workdir, speed_factor, pitch)
        pieces.append(piece)
        total += len(piece)
    return np.concatenate(pieces)


def remove_espeak_folder(workdir: Path) -> None:
    shutil.rmtree(workdir / "espeak", ignore_errors=True)
