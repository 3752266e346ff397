"""On-the-fly augmentation of the training crops (beyond the study). Off by default: the study
trained without any ("no data augmentation nor any post-processing").

SpeechBrain's ``speechbrain.augment`` does the signal processing:

- ``AddNoise``: MUSAN noise, music or babble added at an SNR (dB, of RMS amplitudes)
  drawn uniformly from ``<kind>_snr_low``..``<kind>_snr_high``; babble is
  ``babble_speakers_low``..``babble_speakers_high`` MUSAN speech crops summed, as in
  Kaldi's VoxCeleb recipe (whose SNR ranges are the defaults);
- ``AddReverb``: a RIRS_NOISES room impulse response, aligned on its direct path, the
  level kept. The crop is zero-padded by at least the response's length first, so the
  convolution is linear (SpeechBrain's FFT convolution is circular: the tail of the
  crop's end would wrap onto its start);
- ``SpeedPerturb``: resampling to one of ``speeds`` (percent, drawn uniformly);
- ``Augmenter``: whether a crop is augmented (``augment_prob``) and with how many of the
  enabled noise / music / babble / reverb (``augment_min``..``augment_max``, in random
  order; 1..1 with all four enabled is one of them at random, close to WeSpeaker's
  recipe, which picks reverberation or one of the three noise types).

Exact resume. SpeechBrain's modules draw from the global RNGs (torch, python) and read
their collections through shuffled loaders whose position is state. Here each crop is
augmented with the CPU torch generator and python's ``random`` seeded from ``(seed,
draw)`` for that crop only (and restored after), and the collection files are picked
with those generators instead of loaders, so an augmented crop is, like the crop itself
(lowres.data.crops.crop_offset), a pure function of ``(seed, draw)``: a resumed run
and a run with another number of loader workers see the same crops, and nothing extra is
checkpointed. By default (``augment_side: loader``) it runs on the CPU side, per item in
the loader workers (benchmarks/augment_throughput.py measures what that costs against
the models).

``augment_side: device`` moves the signal processing of noise, music, babble and
reverberation to the training device, batch-wise, after the batch is moved there and
before the features (:meth:`CropAugment.augment_batch`, called by train.py's Brain).
The loader still makes every draw, with the same seeded generators in the same order
(:meth:`CropAugment.plan`: SpeechBrain's ``Augmenter`` over stand-ins that draw as
``AddNoise`` / ``CollectionReverb`` do and note the draws instead of applying them), and
passes them in the batch (:data:`PLAN_KEYS`: per crop the kinds in application order,
their SNRs, the noise crops read, the impulse response), so a crop stays a pure function
of ``(seed, draw)`` and equals the loader side's up to float rounding. The loader keeps
reading the collection files; the device takes the mixing and the convolutions off it. With
``input_normalisation: utterance`` the device also normalises, after augmenting (as the
loader side normalises the augmented crop), with the file statistics in the batch
(``wav_stats``).

Speed perturbation comes first and keeps the crop's length: at speed ``s`` the crop reads
``crop * s / 100`` frames of the file (at the same seeded offset rule) and the
perturbation brings them to ``crop`` frames (WeSpeaker likewise crops after perturbing),
so batches and model cost are as without it; at 100 the crop is the unaugmented one.
Speed perturbation changes how many frames a crop reads, so it stays on the loader side
with ``augment_side: device`` too (the device side starts from the perturbed crop).
``speed_new_speakers`` (WeSpeaker, ESPnet): a speaker at the ``k``-th of ``speeds`` is
another class, label ``speaker + k * n_speakers``; the classifier then has
``n_speakers * len(speeds)`` outputs (:func:`n_classes`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from speechbrain.augment.augmenter import Augmenter
from speechbrain.augment.time_domain import AddNoise, AddReverb, SpeedPerturb
from speechbrain.processing.signal_processing import compute_amplitude, dB_to_amplitude, rescale

from lowres.data.crops import crop_offset
from lowres.io.audio import SAMPLE_RATE, read_segment
from lowres.io.hparams import invalid_hparam
from lowres.io.lists import read_manifest

ADDITIVE = ("noise", "music", "babble")
AUGMENTATIONS = (*ADDITIVE, "reverb")  # enabled by augment_<name>: true
CSV_KEYS = {"noise": "noise_csv", "music": "music_csv", "babble": "babble_csv",
            "reverb": "rir_csv"}
#: A random stream of its own: augmentation draws never shift the crops' or the order's.
_STREAM = 2_000_003
SIDES = ("loader", "device")  # augment_side: where the signal processing runs
#: What the loader passes the device side per crop (augment_side: device; see the module
#: doc): kinds (index in ``enabled``, -1: none) in application order, their SNRs (dB),
#: the noise crops (time x slot) and the impulse response (one zero for none).
PLAN_KEYS = ("augment_kind", "augment_snr", "augment_noise", "augment_rir")
PREPARE_HINT = ("python -m prepare.augment_sets --musan DIR/musan --rirs DIR/RIRS_NOISES "
                "--save_folder {folder}")


@dataclass(frozen=True)
class AugmentConfig:
    """What to do to the training crops (see the module doc); from :func:`augment_config`."""

    enabled: tuple[str, ...] = ()  # of AUGMENTATIONS, in that order
    prob: float = 1.0
    min_augmentations: int = 1
    max_augmentations: int = 1
    snr: tuple[tuple[str, float, float], ...] = ()  # (kind, low dB, high dB)
    babble_speakers: tuple[int, int] = (3, 7)
    csv: tuple[tuple[str, str], ...] = ()  # (augmentation, prepared CSV)
    speeds: tuple[float, ...] = (100,)  # percent; (100,): no speed perturbation
    new_speakers: bool = False
    side: str = "loader"  # of SIDES


def n_classes(n_speakers: int, speed_perturb: bool, speeds: Sequence, new_speakers: bool) -> int:
    """Outputs of the training classifier: one per speaker, times ``len(speeds)`` when
    speed-perturbed speakers are new classes (used by hparams/shared/base.yaml)."""
    return int(n_speakers) * (len(speeds) if speed_perturb and new_speakers else 1)


def augment_config(values: dict) -> AugmentConfig | None:
    """The augmentation the hparams ``values`` ask for; ``None`` when none (the study).

    Raises :class:`HparamsError` naming the key and value of the first bad setting, a
    prepared CSV that is missing included."""

    def flag(key):
        if not isinstance(values.get(key, False), bool):
            raise invalid_hparam(key, values.get(key), "must be true or false")
        return values.get(key, False)

    def number(key):
        v = values.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise invalid_hparam(key, v, "must be a number")
        return v

    def integer(key, low):
        v = values.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise invalid_hparam(key, v, f"must be an integer >= {low}")
        return v

    side = values.get("augment_side", "loader")
    if side not in SIDES:
        raise invalid_hparam("augment_side", side, f"must be one of {', '.join(SIDES)}")
    enabled = tuple(a for a in AUGMENTATIONS if flag(f"augment_{a}"))
    speed = flag("speed_perturb")
    new_speakers = flag("speed_new_speakers")
    if new_speakers and not speed:
        raise invalid_hparam("speed_new_speakers", new_speakers, "needs speed_perturb: true")
    if not enabled and not speed:
        return None
    if values.get("sample_rate", SAMPLE_RATE) != SAMPLE_RATE:
        raise invalid_hparam("sample_rate", values["sample_rate"],
                             f"augmentation needs {SAMPLE_RATE} (the prepared collections')")
    speeds = (100,)
    if speed:
        speeds = values.get("speeds")
        if not isinstance(speeds, (list, tuple)) or not speeds or any(
                isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0
                for s in speeds) or len(set(speeds)) != len(speeds):
            raise invalid_hparam("speeds", speeds, "must be a list of distinct positive speeds "
                                 "in percent, e.g. [90, 100, 110]")
    if not enabled:
        return AugmentConfig(speeds=tuple(speeds), new_speakers=new_speakers, side=side)
    prob = number("augment_prob")
    if not 0 <= prob <= 1:
        raise invalid_hparam("augment_prob", prob, "must be between 0 and 1")
    low, high = integer("augment_min", 0), integer("augment_max", 1)
    if low > high or high > len(enabled):
        raise invalid_hparam("augment_max", high, f"must be at least augment_min ({low}) and "
                             "at most the number of enabled augmentations "
                             f"({len(enabled)}: {', '.join(enabled)})")
    snr = []
    for kind in (a for a in ADDITIVE if a in enabled):
        lo, hi = number(f"{kind}_snr_low"), number(f"{kind}_snr_high")
        if lo > hi:
            raise invalid_hparam(f"{kind}_snr_high", hi, f"must be at least {kind}_snr_low ({lo})")
        snr.append((kind, float(lo), float(hi)))
    babble = (3, 7)
    if "babble" in enabled:
        babble = (integer("babble_speakers_low", 1), integer("babble_speakers_high", 1))
        if babble[0] > babble[1]:
            raise invalid_hparam("babble_speakers_high", babble[1],
                                 f"must be at least babble_speakers_low ({babble[0]})")
    csv = []
    for a in enabled:
        key = CSV_KEYS[a]
        path = values.get(key)
        if not isinstance(path, str) or not Path(path).is_file():
            folder = Path(path).parent if isinstance(path, str) else "MANIFESTS/augment"
            raise invalid_hparam(key, path, f"no such file (augment_{a} is on; prepare the "
                                 f"collections: {PREPARE_HINT.format(folder=folder)})")
        csv.append((a, path))
    return AugmentConfig(enabled, float(prob), low, high, tuple(snr), babble, tuple(csv),
                         tuple(speeds), new_speakers, side)


def unused_keys(values: dict) -> set[str]:
    """The augmentation keys of ``values`` that change nothing: those of every kind that is
    off (all but the switches when none is on), and the speeds without speed_perturb."""
    enabled = {a for a in AUGMENTATIONS if values.get(f"augment_{a}") is True}
    unused = {key for a in AUGMENTATIONS if a not in enabled
              for key in (CSV_KEYS[a], f"{a}_snr_low", f"{a}_snr_high")}
    if "babble" not in enabled:
        unused |= {"babble_speakers_low", "babble_speakers_high"}
    if not enabled:
        unused |= {"augment_prob", "augment_min", "augment_max", "augment_folder"}
    if values.get("speed_perturb") is not True:
        unused |= {"speeds", "speed_new_speakers"}
    if not enabled and values.get("speed_perturb") is not True:
        unused.add("augment_side")
    return unused


@contextmanager
def _seeded(seed: int):
    """The CPU torch generator and python's ``random`` seeded with ``seed`` for the block,
    then restored: the training's own random streams (dropout, SpecAugment) stay as they
    were, also when the crops are loaded in the training process (``num_workers: 0``)."""
    py_state, torch_state = random.getstate(), torch.get_rng_state()
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        random.setstate(py_state)


class Collection:
    """The files of one prepared CSV (prepare.augment_sets), picked with the (seeded)
    global torch generator."""

    def __init__(self, csv_path: str | Path):
        df = read_manifest(csv_path, required=("ID", "duration", "wav"))
        self.paths = list(df.wav)
        self.frames = np.rint(df.duration.to_numpy() * SAMPLE_RATE).astype(int)

    def _pick(self) -> int:
        return int(torch.randint(len(self.paths), (1,)))

    def crop(self, frames: int) -> torch.Tensor:
        """``frames`` frames of a random file from a random offset; a shorter file is
        repeated (as WeSpeaker and Kaldi extend a short noise)."""
        k = self._pick()
        start = int(torch.randint(max(1, int(self.frames[k]) - frames + 1), (1,)))
        sig = read_segment(self.paths[k], start, frames)
        if 0 < len(sig) < frames:
            sig = sig.repeat(math.ceil(frames / len(sig)))[:frames]
        return sig

    def whole(self) -> torch.Tensor:
        """A random file, whole (first channel)."""
        k = self._pick()
        return read_segment(self.paths[k], 0, int(self.frames[k]))


class NoiseCrops:
    """``AddNoise``'s ``noise_funct``: per waveform, the sum of ``count`` (low..high)
    crops of a collection, as long as the waveform."""

    def __init__(self, collection: Collection, count: tuple[int, int] = (1, 1)):
        self.collection, self.count = collection, count

    def __call__(self, waveforms: torch.Tensor) -> torch.Tensor:
        frames = waveforms.shape[1]
        out = []
        for _ in range(len(waveforms)):
            n = int(torch.randint(self.count[0], self.count[1] + 1, (1,)))
            out.append(torch.stack([self.collection.crop(frames) for _ in range(n)]).sum(0))
        return torch.stack(out).to(waveforms)


class CollectionReverb(AddReverb):
    """SpeechBrain's ``AddReverb`` with a random impulse response of a collection,
    convolved linearly (the crop zero-padded by at least the response's length, to a fast
    FFT size, then cut back)."""

    def __init__(self, collection: Collection):
        super().__init__(csv_file=None, reverb_sample_rate=SAMPLE_RATE,
                         clean_sample_rate=SAMPLE_RATE)
        self.collection = collection
        self._rir = None

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        self._rir = self.collection.whole()
        frames = waveforms.shape[1]
        padded = scipy.fft.next_fast_len(frames + len(self._rir), real=True)  # fast FFT size
        return super().forward(F.pad(waveforms, (0, padded - frames)))[:, :frames]

    def _load_rir(self, waveforms):  # AddReverb's hook for the response to apply
        return self._rir[None, :, None].to(waveforms)


class _PlannedNoise(torch.nn.Module):
    """Device side: draws what ``AddNoise`` draws, in its order (the SNR, then the noise
    crops), and notes them in ``plan`` instead of adding the noise."""

    def __init__(self, code: int, snr_low: float, snr_high: float, noise_funct: NoiseCrops,
                 plan: list):
        super().__init__()
        self.code, self.snr_low, self.snr_high = code, snr_low, snr_high
        self.noise_funct, self.plan = noise_funct, plan

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        snr = torch.rand(len(waveforms), 1) * (self.snr_high - self.snr_low) + self.snr_low
        self.plan.append((self.code, float(snr), self.noise_funct(waveforms)[0]))
        return waveforms


class _PlannedReverb(torch.nn.Module):
    """Device side: draws the impulse response ``CollectionReverb`` would apply and notes
    it in ``plan``."""

    def __init__(self, code: int, collection: Collection, plan: list):
        super().__init__()
        self.code, self.collection, self.plan = code, collection, plan

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        self.plan.append((self.code, 0.0, self.collection.whole()))
        return waveforms


def _add_noise(x: torch.Tensor, frames: torch.Tensor, noise: torch.Tensor,
               snr: torch.Tensor) -> torch.Tensor:
    """``AddNoise.forward``'s mixture with each row's own ``snr`` (dB) and noise (RMS
    amplitudes over the row's ``frames``)."""
    clean_amplitude = compute_amplitude(x, frames, amp_type="rms")
    noise_amplitude_factor = 1 / (dB_to_amplitude(snr) + 1)
    new_noise_amplitude = noise_amplitude_factor * clean_amplitude
    noise_amplitude = compute_amplitude(noise, frames, amp_type="rms")
    return x * (1 - noise_amplitude_factor) + noise * (new_noise_amplitude
                                                       / (noise_amplitude + 1e-14))


def _reverb(x: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """:class:`CollectionReverb` with each row's own impulse response (zero-padded rows):
    linear FFT convolution aligned on the response's direct path (SpeechBrain's
    ``reverberate``: its largest magnitude), the crop's average amplitude kept."""
    frames = x.shape[1]
    n = scipy.fft.next_fast_len(frames + rir.shape[1], real=True)
    padded = F.pad(x, (0, n - frames))
    direct = rir.abs().max(dim=1).indices
    where = (torch.arange(rir.shape[1], device=x.device)[None] - direct[:, None]) % n
    kernel = torch.zeros(len(x), n, dtype=x.dtype, device=x.device).scatter_(1, where, rir)
    out = torch.fft.irfft(torch.fft.rfft(padded) * torch.fft.rfft(kernel), n=n)
    level = compute_amplitude(padded, n, amp_type="avg")
    return rescale(out, n, level, amp_type="avg")[:, :frames]


class CropAugment:
    """The training crop of draw ``draw``, augmented as ``config`` says: a pure function
    of ``(seed, draw)`` (lowres.data.loading.train_dataset calls :meth:`crop`, or with
    :attr:`on_device` :meth:`plan`, and the Brain :meth:`augment_batch`)."""

    def __init__(self, config: AugmentConfig):
        self.config = config
        self.perturbers = [None if s == 100 else SpeedPerturb(SAMPLE_RATE, speeds=[s])
                           for s in config.speeds]
        csv, snr = dict(config.csv), {k: (lo, hi) for k, lo, hi in config.snr}
        self._plan: list[tuple[int, float, torch.Tensor]] = []  # plan()'s notes of a crop
        modules, planned = [], []
        for code, name in enumerate(config.enabled):
            collection = Collection(csv[name])
            if name == "reverb":
                modules.append(CollectionReverb(collection))
                planned.append(_PlannedReverb(code, collection, self._plan))
            else:
                count = config.babble_speakers if name == "babble" else (1, 1)
                noise = NoiseCrops(collection, count)
                modules.append(AddNoise(snr_low=snr[name][0], snr_high=snr[name][1],
                                        noise_funct=noise))
                planned.append(_PlannedNoise(code, *snr[name], noise, self._plan))
        self.augmenter = self.planner = None
        if modules:
            self.augmenter, self.planner = (Augmenter(
                augment_prob=config.prob, min_augmentations=config.min_augmentations,
                max_augmentations=config.max_augmentations, shuffle_augmentations=True,
                augmentations=m) for m in (modules, planned))
        #: augment_side device with something to do there (speed perturbation stays here)
        self.on_device = config.side == "device" and self.augmenter is not None

    def _draws(self, seed: int, draw: int) -> tuple[int, int]:
        """(speed index, seed of the crop's SpeechBrain draws) of a training draw."""
        rng = np.random.default_rng((int(seed), _STREAM, int(draw)))
        return int(rng.integers(len(self.config.speeds))), int(rng.integers(2**62))

    def speed_index(self, seed: int, draw: int) -> int:
        """Which of ``speeds`` the crop of ``draw`` is at."""
        return self._draws(seed, draw)[0]

    def class_offset(self, seed: int, draw: int, n_speakers: int) -> int:
        """Added to the speaker's label (``speed_new_speakers``: ``k * n_speakers``)."""
        return self.speed_index(seed, draw) * n_speakers if self.config.new_speakers else 0

    def crop(self, path: str, num_frames: int, crop_frames: int, seed: int, draw: int,
             read=read_segment) -> torch.Tensor:
        """The augmented crop (``crop_frames`` long, or shorter for a short file);
        ``read(path, start, frames)`` reads the utterance (the collections are files)."""
        return self._crop(self.augmenter, path, num_frames, crop_frames, seed, draw, read)

    def _crop(self, augmenter, path, num_frames, crop_frames, seed, draw, read):
        k, item_seed = self._draws(seed, draw)
        frames = int(round(crop_frames * self.config.speeds[k] / 100))
        sig = read(path, crop_offset(seed, draw, num_frames, frames), frames)
        with _seeded(item_seed):
            if self.perturbers[k] is not None:
                sig = self.perturbers[k](sig[None])[0, :crop_frames]
            if augmenter is not None:
                sig = augmenter(sig[None], torch.ones(1))[0][0]
        return sig

    def plan(self, path: str, num_frames: int, crop_frames: int, seed: int, draw: int,
             read=read_segment) -> tuple[torch.Tensor, ...]:
        """Device side: the crop of :meth:`crop` before its noise and reverberation (speed-
        perturbed, though) and what :meth:`crop` does to it, as :data:`PLAN_KEYS`' tensors
        (the same draws: :meth:`augment_batch` then gives :meth:`crop`'s output)."""
        self._plan.clear()
        sig = self._crop(self.planner, path, num_frames, crop_frames, seed, draw, read)
        slots = self.config.max_augmentations
        kind, snr = torch.full((slots,), -1, dtype=torch.long), torch.zeros(slots)
        noise, rir = torch.zeros(len(sig), slots), torch.zeros(1)
        for j, (code, value, signal) in enumerate(self._plan):
            kind[j], snr[j] = code, value
            if self.config.enabled[code] == "reverb":
                rir = signal
            else:
                noise[:, j] = signal
        self._plan.clear()
        return sig, kind, snr, noise, rir

    def augment_batch(self, wavs: torch.Tensor, lens: torch.Tensor, batch) -> torch.Tensor:
        """Device side: the batch's crops ``wavs`` (on the training device; ``lens``
        relative) augmented as the batch's :data:`PLAN_KEYS` say, slot by slot, each kind
        on all its rows at once; then normalised with ``batch.wav_stats`` (``mean``,
        ``scale`` of lowres.data.crops.normalise_with) when the batch has them. Draws
        nothing: the output is a function of the batch."""
        device = wavs.device
        with torch.autocast(device.type, enabled=False):
            x = wavs.float()
            frames = torch.round(lens.float() * x.shape[1])[:, None]
            valid = torch.arange(x.shape[1], device=device)[None] < frames
            kind = batch.augment_kind.data.cpu()  # rows chosen on the host: no device sync
            snr = batch.augment_snr.data.to(device, non_blocking=True)
            noise = batch.augment_noise.data.to(device, non_blocking=True)
            rir = batch.augment_rir.data.to(device, non_blocking=True)
            reverb = self.config.enabled.index("reverb") if "reverb" in self.config.enabled \
                else -2
            for j in range(kind.shape[1]):  # the j-th augmentation of each crop
                additive = (kind[:, j] >= 0) & (kind[:, j] != reverb)
                for rows, reverberate in ((additive, False), (kind[:, j] == reverb, True)):
                    if not bool(rows.any()):
                        continue
                    index = rows.nonzero()[:, 0].to(device)
                    if reverberate:  # the tail past a short crop's end cut off, as there
                        out = _reverb(x[index], rir[index]) * valid[index]
                    else:
                        out = _add_noise(x[index], frames[index], noise[index, :, j],
                                         snr[index, j, None])
                    x = x.index_copy(0, index, out)
            stats = getattr(batch, "wav_stats", None)
            if stats is not None:  # utterance normalisation, after augmenting as the loader
                mean, scale = stats.data.to(device, non_blocking=True).float().unbind(1)
                x = (x - mean[:, None]) * scale[:, None] * valid
        return x.to(wavs.dtype)


def from_hparams(values: dict) -> CropAugment | None:
    """The training crops' augmentation of a run (``None``: none, as the study)."""
    config = augment_config(values)
    return CropAugment(config) if config is not None else None
