"""Training-crop augmentation (lowres.data.augment): each kind changes the crops as
configured, it is off by default, every crop is a pure function of (seed, draw), and the
device side (augment_side: device) gives the loader side's crops."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import ROOT, load_script
from speechbrain.dataio.batch import PaddedBatch

from lowres.data import augment
from lowres.data.loading import speaker_encoder, train_dataset
from lowres.io.audio import SAMPLE_RATE
from lowres.io.hparams import HparamsError, plain_values
from prepare.augment_sets import prepare_augment_sets
from prepare.synthetic.augment_sets import generate_augment_sets
from prepare.wav_stats import add_wav_stats

CROP = 1.0
FRAMES = int(CROP * SAMPLE_RATE)
OFF = {f"augment_{a}": False for a in augment.AUGMENTATIONS} | {
    "speed_perturb": False, "speed_new_speakers": False}


@pytest.fixture(scope="module")
def collections(tmp_path_factory) -> Path:
    """The synthetic MUSAN / RIRS_NOISES stand-ins, prepared (CSVs in the returned folder)."""
    root = tmp_path_factory.mktemp("augment_sets")
    generate_augment_sets(root, seed=0)
    prepare_augment_sets(root / "csv", root / "musan", root / "RIRS_NOISES")
    return root


def write_manifest(folder: Path, signals: dict[str, np.ndarray]) -> Path:
    """A training manifest of one file per speaker (``spk -> 16 kHz signal``)."""
    rows = []
    for spk, sig in signals.items():
        wav = folder / f"{spk}.wav"
        sf.write(wav, sig.astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
        rows.append({"ID": f"{spk}/s/00001", "duration": len(sig) / SAMPLE_RATE,
                     "wav": str(wav), "spk_id": spk, "session": "s", "gender": "m"})
    path = folder / "train.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def speech_manifest(collections, tmp_path_factory) -> Path:
    """Three 'speakers': the stand-in speech files (6-10 s) as training utterances."""
    files = sorted((collections / "musan" / "speech").rglob("*.wav"))[:3]
    return write_manifest(tmp_path_factory.mktemp("train"),
                          {f"id{k}": sf.read(f, dtype="float32")[0] for k, f in enumerate(files)})


def hparams(collections: Path, **values) -> dict:
    csv = collections / "csv"
    return {**OFF, "augment_prob": 1.0, "augment_min": 1, "augment_max": 1,
            "noise_snr_low": 0, "noise_snr_high": 15, "music_snr_low": 5,
            "music_snr_high": 15, "babble_snr_low": 13, "babble_snr_high": 20,
            "babble_speakers_low": 3, "babble_speakers_high": 7,
            "noise_csv": str(csv / "musan_noise.csv"), "music_csv": str(csv / "musan_music.csv"),
            "babble_csv": str(csv / "musan_speech.csv"), "rir_csv": str(csv / "rirs.csv"),
            "speeds": [90, 100, 110], "sample_rate": SAMPLE_RATE, **values}


def crops(manifest, aug, draws, encoder=None, seed=3):
    ds = train_dataset(manifest, encoder, CROP, seed, augment=aug)
    return [ds[(d % len(ds), d)] for d in draws]


def snr_db(noisy: torch.Tensor, clean: torch.Tensor) -> float:
    """SNR of ``noisy = a * clean + noise`` (a by least squares; the noise is independent)."""
    x, y = clean.double(), noisy.double()
    a = float(y @ x / (x @ x))
    return float(10 * torch.log10((a * x).pow(2).sum() / (y - a * x).pow(2).sum()))


def test_off_by_default():
    for cell in ("xvector_tiny_few", "ecapa_full", "wav2vec2_tiny_many_low"):
        values = plain_values(ROOT / "hparams" / f"{cell}.yaml", {"data_folder": "/data"})
        assert all(values[key] is False for key in OFF)  # every switch is in the yaml, off
        assert values["augment_side"] == "loader"
        assert augment.augment_config(values) is None
        assert augment.from_hparams(values) is None


def test_unused_keys_are_those_of_the_kinds_that_are_off():
    """What a model card leaves out: with noise on, noise's SNRs and the shared keys count
    and music's, babble's and the speeds do not; with nothing on, only the switches do."""
    values = plain_values(ROOT / "hparams" / "xvector_tiny_few.yaml", {"data_folder": "/data"})
    off = augment.unused_keys(values)
    assert {"augment_prob", "noise_snr_low", "babble_speakers_high", "speeds",
            "augment_side", "speed_new_speakers"} <= off
    assert not off & (set(OFF) - {"speed_new_speakers"})  # the switches stay
    noise = augment.unused_keys({**values, "augment_noise": True})
    assert {"noise_snr_low", "noise_csv", "augment_prob", "augment_side"}.isdisjoint(noise)
    assert {"music_snr_low", "babble_speakers_low", "rir_csv", "speeds"} <= noise
    speed = augment.unused_keys({**values, "speed_perturb": True})
    assert {"speeds", "speed_new_speakers", "augment_side"}.isdisjoint(speed)
    assert "augment_prob" in speed


@pytest.mark.parametrize("args, message", [
    (["--augment_reverb=true", "--augment_folder=/nonexistent"], "rir_csv='/nonexistent/"),
    (["--speed_new_speakers=true"], "speed_new_speakers=True"),
    (["--augment_side=gpu"], "augment_side='gpu'"),
])
def test_train_py_checks_the_keys_before_training(args, message, tmp_path):
    train = load_script(ROOT / "recipes" / "VoxCeleb" / "train.py", "lowres_train")
    with pytest.raises(HparamsError, match=message):
        train.main([str(ROOT / "hparams" / "xvector_tiny_few.yaml"), f"--output_folder={tmp_path}",
                    "--data_folder=/nonexistent", *args])


@pytest.mark.parametrize("kind, low, high", [("noise", 2, 6), ("music", 8, 12),
                                             ("babble", 14, 18)])
def test_additive_noise_at_an_snr_within_the_range(collections, speech_manifest, kind, low,
                                                   high):
    aug = augment.from_hparams(hparams(collections, **{
        f"augment_{kind}": True, f"{kind}_snr_low": low, f"{kind}_snr_high": high}))
    draws = range(12)
    clean, noisy = crops(speech_manifest, None, draws), crops(speech_manifest, aug, draws)
    snrs = [snr_db(n["sig"], c["sig"]) for n, c in zip(noisy, clean, strict=True)]
    assert all(low - 0.3 < s < high + 0.3 for s in snrs), snrs
    assert max(snrs) - min(snrs) > 1  # drawn from the range, not one value


def test_reverb_applies_an_impulse_response_linearly(collections, speech_manifest, tmp_path):
    delay, echo = 800, 0.5
    rir = np.zeros(1200, dtype=np.float32)
    rir[[0, delay]] = [1.0, echo]
    rirs = write_manifest(tmp_path, {"rir": rir})
    aug = augment.from_hparams(hparams(collections, augment_reverb=True, rir_csv=str(rirs)))
    for clean, reverbed in zip(crops(speech_manifest, None, range(3)),
                               crops(speech_manifest, aug, range(3)), strict=True):
        x, y = clean["sig"].double(), reverbed["sig"].double()
        assert len(y) == len(x) == FRAMES
        expected = x.clone()
        expected[delay:] += echo * x[:-delay]  # linear: nothing wraps onto the start
        scale = float(y @ expected / (expected @ expected))
        assert scale > 0
        assert float((y - scale * expected).abs().max()) < 1e-4 * float(y.abs().max()) + 1e-6


def test_speed_perturbation_scales_pitch_and_length(collections, tmp_path):
    tone = np.sin(2 * np.pi * 500 * np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE)
    short = np.sin(2 * np.pi * 500 * np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE)
    manifest = write_manifest(tmp_path, {"long": tone, "short": short})

    def peak_hz(sig):
        spectrum = np.abs(np.fft.rfft(sig.numpy() * np.hanning(len(sig))))
        return np.argmax(spectrum) * SAMPLE_RATE / len(sig)

    for speed in (90, 110):
        aug = augment.from_hparams(hparams(collections, speed_perturb=True, speeds=[speed]))
        long_crop, short_crop = crops(manifest, aug, [0, 1])
        assert len(long_crop["sig"]) == FRAMES  # crop_seconds of output audio ...
        assert abs(peak_hz(long_crop["sig"]) - 5 * speed) < 3  # ... played at the speed
        assert abs(len(short_crop["sig"]) - len(short) * 100 / speed) <= 1


def test_speed_perturbed_speakers_as_new_classes(collections, speech_manifest, tmp_path):
    encoder = speaker_encoder(speech_manifest, tmp_path / "labels.txt")
    n = len(encoder)
    values = hparams(collections, speed_perturb=True, speed_new_speakers=True)
    assert augment.n_classes(n, True, values["speeds"], True) == 3 * n
    assert augment.n_classes(n, True, values["speeds"], False) == n
    aug = augment.from_hparams(values)
    draws = range(30)
    plain, items = crops(speech_manifest, None, draws, encoder), \
        crops(speech_manifest, aug, draws, encoder)
    speeds = [values["speeds"][aug.speed_index(3, d)] for d in draws]
    assert set(speeds) == {90, 100, 110}
    for p, item, speed in zip(plain, items, speeds, strict=True):
        base = int(p["spk_id_encoded"])
        assert int(item["spk_id_encoded"]) == base + values["speeds"].index(speed) * n
        if speed == 100:  # the unperturbed crop is the study's crop
            assert torch.equal(item["sig"], p["sig"])
        else:
            assert not torch.equal(item["sig"], p["sig"])
    without = augment.from_hparams(hparams(collections, speed_perturb=True))
    assert [int(i["spk_id_encoded"]) for i in crops(speech_manifest, without, draws, encoder)] \
        == [int(p["spk_id_encoded"]) for p in plain]


EVERY = dict(augment_noise=True, augment_music=True, augment_babble=True, augment_reverb=True,
             augment_prob=0.8, augment_max=2, speed_perturb=True)


@pytest.mark.parametrize("side", augment.SIDES)
def test_crops_are_a_pure_function_of_seed_and_draw(collections, speech_manifest, side):
    aug = augment.from_hparams(hparams(collections, **EVERY, augment_side=side))
    assert aug.on_device == (side == "device")
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = crops(speech_manifest, aug, range(8))
    assert torch.equal(torch.get_rng_state(), state)  # the training's RNG is left alone
    again = crops(speech_manifest, aug, [7, 3, 5, 0, 1, 2, 4, 6])  # another order
    by_draw = dict(zip([7, 3, 5, 0, 1, 2, 4, 6], again, strict=True))
    keys = ("sig", *augment.PLAN_KEYS) if side == "device" else ("sig",)
    for d, item in enumerate(first):  # device side: the crop and the draws it carries
        assert all(torch.equal(item[k], by_draw[d][k]) for k in keys)
    other_seed = crops(speech_manifest, aug, range(8), seed=4)
    assert not all(torch.equal(a["sig"], b["sig"]) for a, b in zip(first, other_seed,
                                                                    strict=True))


@pytest.mark.parametrize("normalise", [False, True])
def test_device_side_gives_the_loader_sides_crops(collections, speech_manifest, tmp_path,
                                                  normalise):
    signals = {f"id{k}": sf.read(f, dtype="float32")[0]
               for k, f in enumerate(pd.read_csv(speech_manifest).wav)}
    signals["short"] = signals["id0"][: FRAMES // 2]  # shorter than the crop: padded rows
    manifest = write_manifest(tmp_path, signals)
    if normalise:
        add_wav_stats(manifest)
    values = hparams(collections, **EVERY)
    loader_side = augment.from_hparams(values)
    device_side = augment.from_hparams({**values, "augment_side": "device"})
    draws = range(24)
    expected = [train_dataset(manifest, None, CROP, 3, normalise=normalise,
                              augment=loader_side)[(d % len(signals), d)]["sig"] for d in draws]
    ds = train_dataset(manifest, None, CROP, 3, normalise=normalise, augment=device_side)
    batch = PaddedBatch([ds[(d % len(signals), d)] for d in draws])
    kinds = batch.augment_kind.data
    enabled = device_side.config.enabled
    assert set(kinds[:, 0].tolist()) == {-1, *range(len(enabled))}  # each kind, and none
    assert bool((kinds[:, 1] >= 0).any())  # two augmentations on some crops
    wavs, lens = batch.sig
    state, before = torch.get_rng_state(), wavs.clone()
    out = device_side.augment_batch(wavs, lens, batch)  # device="cpu": the device path
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(wavs, before)
    for row, want in zip(out, expected, strict=True):
        torch.testing.assert_close(row[:len(want)], want, rtol=1e-5, atol=1e-6)
        assert not bool(row[len(want):].any())  # padding stays zero


def test_speed_perturbation_stays_on_the_loader_side(collections, speech_manifest):
    values = hparams(collections, speed_perturb=True, augment_side="device")
    aug = augment.from_hparams(values)
    assert not aug.on_device  # nothing for the device: the loader side's crops
    on_loader = augment.from_hparams({**values, "augment_side": "loader"})
    for a, b in zip(crops(speech_manifest, aug, range(3)),
                    crops(speech_manifest, on_loader, range(3)), strict=True):
        assert torch.equal(a["sig"], b["sig"]) and set(a) == set(b)


def test_bad_settings_name_the_key(collections, tmp_path):
    def error(**values):
        with pytest.raises(HparamsError) as err:
            augment.augment_config(hparams(collections, **values))
        return str(err.value)

    message = error(augment_noise=True, noise_csv=str(tmp_path / "none" / "musan_noise.csv"))
    assert "noise_csv=" in message and "python -m prepare.augment_sets" in message
    assert "speed_new_speakers" in error(speed_new_speakers=True)
    assert "augment_max" in error(augment_noise=True, augment_max=2)
    assert "music_snr_high" in error(augment_music=True, music_snr_low=10, music_snr_high=5)
    assert "speeds" in error(speed_perturb=True, speeds=[90, 90])
    assert "augment_prob" in error(augment_reverb=True, augment_prob=1.5)
    assert "augment_side='gpu'" in error(augment_side="gpu")  # checked with augmentation off
