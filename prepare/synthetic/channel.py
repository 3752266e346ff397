"""Recording channels for synthetic sessions: room, noise, microphone, codec.

Every session of a speaker gets its own random channel, applied once to the
session's whole speech stream (16 kHz float32) before it is cut into files:
1. room: a synthetic impulse response (direct path, early reflections and an
   exponentially decaying tail, RT60 0.1-0.9 s);
2. background noise at a random SNR (white, pink, brown, mains hum or babble);
3. microphone / EQ colouring: a smooth random frequency response (peaks,
   dips and a spectral tilt) with high-pass and optional low-pass band-limiting;
4. sometimes a telephone or low-bitrate codec round trip (GSM or u-law at
   8 kHz with sox, MP3 or Opus with ffmpeg);
5. a recording level.
`strength` scales the magnitudes (EQ gains, tilt, SNR) and how often the
severe effects (codecs, narrow bands) occur; 1.0 is the default corpus.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import fft as sfft
from scipy.signal import fftconvolve

from lowres.io.audio_headers import SAMPLE_RATE

CODECS = ("none", "gsm", "ulaw", "mp3", "opus")
NOISES = ("white", "pink", "brown", "hum", "babble")


@dataclass(frozen=True)
class Channel:
    rt60: float  # seconds; 0 = no room
    direct_to_reverb_db: float
    noise: str
    snr_db: float
    eq_peaks: tuple  # ((centre Hz, gain dB, bandwidth octaves), ...)
    tilt_db_per_octave: float
    highpass_hz: float
    lowpass_hz: float  # >= 8000 = none
    codec: str
    level_db: float  # peak level, dBFS

    def describe(self) -> dict:
        return {k: (repr(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def random_channel(rng: np.random.Generator, strength: float = 1.0) -> Channel:
    """A random session channel; see the module docstring."""
    s = strength
    has_room = rng.random() < min(1.0, 0.8 * s)
    codec = "none"
    if rng.random() < min(0.9, 0.3 * s):
        codec = str(rng.choice(CODECS[1:]))
    n_peaks = int(rng.integers(2, 6))
    eq_peaks = tuple(
        (round(float(np.exp(rng.uniform(np.log(150), np.log(6000)))), 1),
         round(float(rng.normal(0, 6 * s)), 2), round(float(rng.uniform(0.3, 1.5)), 2))
        for _ in range(n_peaks)
    )
    narrow = rng.random() < min(0.9, 0.25 * s)
    return Channel(
        rt60=round(float(rng.uniform(0.1, 0.9)), 3) if has_room else 0.0,
        direct_to_reverb_db=round(float(rng.uniform(-3, 12)), 2),
        noise=str(rng.choice(NOISES)),
        snr_db=round(float(rng.uniform(30 - 25 * min(s, 1.2), 40 - 15 * min(s, 1.2))), 2),
        eq_peaks=eq_peaks,
        tilt_db_per_octave=round(float(rng.normal(0, 2.0 * s)), 2),
        highpass_hz=round(float(np.exp(rng.uniform(np.log(40), np.log(300 if narrow else 150)))),
                          1),
        lowpass_hz=round(float(rng.uniform(2800, 5500)), 1) if narrow else 8000.0,
        codec=codec,
        level_db=round(float(rng.uniform(-12, -1)), 2),
    )


def room_impulse_response(rng: np.random.Generator, rt60: float, drr_db: float) -> np.ndarray:
    n = int(rt60 * 1.2 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[: int(0.002 * SAMPLE_RATE)] = 0.0  # tail starts after the direct path
    for _ in range(6):  # a few discrete early reflections
        k = int(rng.uniform(0.002, 0.03) * SAMPLE_RATE)
        tail[k] += rng.uniform(-1, 1) * 3
    tail *= 10 ** (-drr_db / 20) / np.sqrt(np.sum(tail**2))
    tail[0] = 1.0
    return tail.astype(np.float32)


def _spectral_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with a 1/f**exponent power spectrum."""
    m = sfft.next_fast_len(n, real=True)
    spec = sfft.rfft(rng.standard_normal(m))
    f = np.fft.rfftfreq(m, 1 / SAMPLE_RATE)
    f[0] = f[1]
    return sfft.irfft(spec / f ** (exponent / 2), m)[:n]


def make_noise(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    if kind == "white":
        noise = rng.standard_normal(n)
    elif kind == "pink":
        noise = _spectral_noise(rng, n, 1.0)
    elif kind == "brown":
        noise = _spectral_noise(rng, n, 2.0)
    elif kind == "hum":
        base = rng.choice([50.0, 60.0])
        noise = sum(rng.uniform(0.2, 1) / h * np.sin(2 * np.pi * base * h * t + rng.uniform(0, 6))
                    for h in range(1, 8))
        noise = noise + 0.1 * rng.standard_normal(n)
    elif kind == "babble":  # speech-shaped noise with syllabic modulation, several talkers
        noise = np.zeros(n)
        for _ in range(int(rng.integers(3, 7))):
            env = 1 + np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 6))
            noise += _spectral_noise(rng, n, 1.0) * env
        m = sfft.next_fast_len(n, real=True)
        spec = sfft.rfft(noise, m)
        f = np.fft.rfftfreq(m, 1 / SAMPLE_RATE)
        spec *= np.exp(-0.5 * (np.log2(np.maximum(f, 1) / 500) / 1.2) ** 2)
        noise = sfft.irfft(spec, m)[:n]
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return np.asarray(noise, dtype=np.float64)


def frequency_response(channel: Channel, freqs: np.ndarray) -> np.ndarray:
    """Magnitude response of microphone colouring and band limits."""
    f = np.maximum(freqs, 1.0)
    octaves = np.log2(f / 1000)
    gain_db = channel.tilt_db_per_octave * octaves
    for centre, gain, width in channel.eq_peaks:
        gain_db = gain_db + gain * np.exp(-0.5 * (np.log2(f / centre) / width) ** 2)
    mag = 10 ** (gain_db / 20)
    mag /= np.sqrt(1 + (channel.highpass_hz / f) ** 8)  # 4th-order Butterworth magnitudes
    if channel.lowpass_hz < 8000:
        mag /= np.sqrt(1 + (f / channel.lowpass_hz) ** 8)
    return mag


def _codec_round_trip(x: np.ndarray, codec: str, workdir: Path) -> np.ndarray:
    """Encode and decode with a telephone or low-bitrate codec (deterministic)."""
    src, back = workdir / "codec_in.wav", workdir / "codec_out.wav"
    sf.write(src, x, SAMPLE_RATE, subtype="PCM_16")
    if codec in ("gsm", "ulaw"):
        coded = workdir / ("codec.gsm" if codec == "gsm" else "codec.wav")
        enc = ["-e", "u-law"] if codec == "ulaw" else []
        # -R: no random dither, so the output is reproducible.
        subprocess.run(["sox", "-R", str(src), "-r", "8000", *enc, str(coded)],
                       check=True, capture_output=True)
        subprocess.run(["sox", "-R", str(coded), "-r", str(SAMPLE_RATE), "-e", "signed",
                        "-b", "16", str(back)], check=True, capture_output=True)
    else:
        coded = workdir / ("codec.mp3" if codec == "mp3" else "codec.ogg")
        enc = (["-c:a", "libmp3lame", "-b:a", "16k", "-ar", "8000", "-compression_level", "9"]
               if codec == "mp3" else
               ["-c:a", "libopus", "-b:a", "10k", "-compression_level", "0",
                "-application", "voip"])
        ff = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-threads", "1"]
        subprocess.run([*ff, "-i", str(src), *enc, "-fflags", "+bitexact", str(coded)],
                       check=True, capture_output=True)
        subprocess.run([*ff, "-i", str(coded), "-ar", str(SAMPLE_RATE), "-ac", "1", str(back)],
                       check=True, capture_output=True)
    y, _ = sf.read(back, dtype="float32")
    for path in (src, back, coded):
        path.unlink(missing_ok=True)
    out = np.zeros(len(x), dtype=np.float32)
    out[: min(len(x), len(y))] = y[: len(x)]
    return out


def apply_channel(speech: np.ndarray, channel: Channel, rng: np.random.Generator,
                  workdir: Path) -> np.ndarray:
    """Speech (16 kHz float) as recorded through `channel`; same length, peak below 1."""
    n = len(speech)
    x = speech.astype(np.float64)
    x /= np.sqrt(np.mean(x**2)) + 1e-9
    if channel.rt60 > 0:
        rir = room_impulse_response(rng, channel.rt60, channel.direct_to_reverb_db)
        x = fftconvolve(x, rir)[:n]
    noise = make_noise(rng, channel.noise, n)
    noise *= np.sqrt(np.mean(x**2)) / (np.sqrt(np.mean(noise**2)) + 1e-12)
    x = x + noise * 10 ** (-channel.snr_db / 20)
    m = sfft.next_fast_len(n + 4096, real=True)  # zero padding: (almost) linear filtering
    spec = sfft.rfft(x, m) * frequency_response(channel, np.fft.rfftfreq(m, 1 / SAMPLE_RATE))
    x = sfft.irfft(spec, m)[:n]
    x = (x / (np.max(np.abs(x)) + 1e-9) * 0.9).astype(np.float32)
    if channel.codec != "none":
        x = _codec_round_trip(x, channel.codec, workdir)
    x = x / (np.max(np.abs(x)) + 1e-9) * 10 ** (channel.level_db / 20)
    return x.astype(np.float32)
