"""lowres.scoring.evaluation on a hand-made run: checkpoints, results.json schema, score files."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from speechbrain.utils.checkpoints import Checkpointer

from lowres.io.lists import ListError
from lowres.io.run_folder import COHORT, mark_diverged, read_results, results_path, save_folder
from lowres.scoring.checkpoints import EvaluationError
from lowres.scoring.evaluation import evaluate_run
from lowres.scoring.trials import read_scores

torch.set_num_threads(1)


class SpectrumEmbedder(torch.nn.Module):
    """Stand-in embedder: mean log spectrum of the valid 25 ms frames, then a linear map."""

    padding_invariant = True
    win = 400

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(self.win // 2 + 1, self.win // 2 + 1, bias=False)
        torch.nn.init.eye_(self.proj.weight)

    def forward(self, wavs, lens):
        n_frames = (torch.round(lens * wavs.shape[1]).long() // self.win).clamp(min=1)
        usable = wavs[:, : wavs.shape[1] // self.win * self.win]
        spec = torch.fft.rfft(usable.reshape(wavs.shape[0], -1, self.win), dim=-1).abs()
        mask = (torch.arange(spec.shape[1])[None] < n_frames[:, None]).float()[..., None]
        return self.proj((torch.log1p(spec) * mask).sum(1) / mask.sum(1))


def write_speaker_files(root, spk, n_files, rng, f0):
    rows = []
    for u in range(n_files):
        n = int(rng.integers(8000, 24000))
        t = np.arange(n) / 16000
        wav = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))
        wav = 0.1 * wav + 0.02 * rng.normal(size=n)
        rel = f"{spk}/sess{u % 2}/{u:05d}"
        path = root / f"{rel}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wav.astype(np.float32), 16000)
        rows.append({"ID": rel, "duration": n / 16000, "wav": str(path), "spk_id": spk,
                     "session": f"sess{u % 2}", "gender": "m"})
    return rows


def write_trials(path, rows, max_trials=None):
    pairs = list(itertools.combinations(rows, 2))[:max_trials]
    with open(path, "w") as f:
        for a, b in pairs:
            f.write(f"{int(a['spk_id'] == b['spk_id'])} {a['ID']}.wav {b['ID']}.wav\n")
    return len(pairs)


@pytest.fixture
def fake_run(tmp_path):
    rng = np.random.default_rng(0)
    data, manifests, out = tmp_path / "data", tmp_path / "M", tmp_path / "run"
    (manifests / "test").mkdir(parents=True)
    (manifests / "sub").mkdir()
    test_rows = [r for s in range(5)
                 for r in write_speaker_files(data, f"id1000{s}", 3, rng, 110 + 37 * s)]
    train_rows = [r for s in range(6)
                  for r in write_speaker_files(data, f"id0000{s}", 3, rng, 95 + 41 * s)]
    n_trials = {}
    for name, limit in (("original", 40), ("extended", None), ("hard", 60)):
        pd.DataFrame(test_rows).to_csv(manifests / "test" / f"{name}.csv", index=False)
        n_trials[name] = write_trials(manifests / "test" / f"{name}_trials.txt", test_rows, limit)
    pd.DataFrame(train_rows).to_csv(manifests / "sub" / "train.csv", index=False)
    pd.DataFrame(train_rows[:9]).to_csv(manifests / "sub" / "val.csv", index=False)
    write_trials(manifests / "sub" / "val_trials.txt", train_rows[:9])

    embedder = SpectrumEmbedder()
    checkpointer = Checkpointer(save_folder(out), {"embedder": embedder})
    checkpointer.save_checkpoint(meta={"val_eer": 0.05, "step": 10})  # best: identity map
    best_weight = embedder.proj.weight.detach().clone()
    with torch.no_grad():
        embedder.proj.weight.normal_()
    checkpointer.save_checkpoint(meta={"val_eer": 0.4, "step": 20})  # last: random map
    last_weight = embedder.proj.weight.detach().clone()
    hparams = {
        "embedder": embedder, "checkpointer": checkpointer, "output_folder": str(out),
        "manifest_folder": str(manifests), "train_csv": str(manifests / "sub" / "train.csv"),
        "valid_csv": str(manifests / "sub" / "val.csv"),
        "val_trials": str(manifests / "sub" / "val_trials.txt"),
        "post_process_scores": True, "enroll_training_data": True, "as_norm_top_k": 3,
        "eval_batch_size": 4,
    }
    return hparams, n_trials, best_weight, last_weight


METRIC_KEYS = {"n_trials", "eer", "eer_threshold", "min_dcf_0.01", "min_dcf_0.05", "scores",
               "min_cllr", "cllr", "act_dcf_0.01", "act_dcf_0.05", "intervals"}
INTERVALS = {"eer", "min_dcf_0.01", "min_dcf_0.05", "min_cllr", "cllr"}


def test_results_schema_and_score_files(fake_run):
    hparams, n_trials, best_weight, _ = fake_run
    res = evaluate_run(hparams, "best", device="cpu")
    path = results_path(hparams["output_folder"], "best")
    assert json.loads(path.read_text()) == res
    torch.testing.assert_close(hparams["embedder"].proj.weight, best_weight)
    assert res["checkpoint"]["which"] == "best"
    assert res["checkpoint"]["meta"]["val_eer"] == 0.05 and res["checkpoint"]["meta"]["step"] == 10
    assert res["files_embedded"] == 15 + 9
    assert set(res["validation"]) == {"n_trials", "eer", "eer_threshold"}
    # Calibration trained on the validation trials (raw and AS-norm scores).
    cal = res["calibration"]
    assert cal["trained_on"] == "validation" and cal["n_trials"] == res["validation"]["n_trials"]
    assert cal["prior"] == 0.5 and cal["scale"] > 0 and set(cal["as_norm"]) == {"scale", "offset"}
    assert set(res["test_sets"]) == {"original", "extended", "hard"}
    for name, entry in res["test_sets"].items():
        assert set(entry) == METRIC_KEYS | {"as_norm"}
        assert set(entry["as_norm"]) == METRIC_KEYS | {"variant", "top_k", "cohort_size",
                                                       "cohort_max_files_per_speaker"}
        # hparams without as_norm_variant (runs made before it) keep the two-sided one
        assert entry["as_norm"]["variant"] == "two_sided_top_k"
        assert entry["n_trials"] == n_trials[name] == entry["as_norm"]["n_trials"]
        assert entry["as_norm"]["cohort_size"] == 6 and entry["as_norm"]["top_k"] == 3
        for e in (entry, entry["as_norm"]):
            assert 0 <= e["eer"] <= 1 and 0 <= e["min_dcf_0.01"] <= 1
            assert isinstance(e["eer_threshold"], float)
            assert 0 <= e["min_cllr"] <= min(e["cllr"], 1.0) and e["act_dcf_0.01"] >= 0
            assert e["act_dcf_0.05"] >= e["min_dcf_0.05"] and e["act_dcf_0.01"] >= e["min_dcf_0.01"]
            # the yaml's interval settings; 5 test speakers resampled
            iv = e["intervals"]
            assert {k: iv[k] for k in ("method", "level", "draws", "seed", "n_speakers")} == {
                "method": "speaker_bootstrap", "level": 0.95, "draws": 1000, "seed": 0,
                "n_speakers": 5}
            assert set(iv) - {"method", "level", "draws", "seed", "n_speakers",
                              "degenerate_draws"} == INTERVALS
            for metric in INTERVALS:
                assert iv[metric][0] <= e[metric] <= iv[metric][1], (name, metric)
            scores = read_scores(path.parent / e["scores"])
            assert len(scores) == n_trials[name]
            assert set(scores.label) <= {0, 1} and scores.path1.str.endswith(".wav").all()
    # Distinct synthetic voices and an identity map: clearly better than chance.
    assert res["test_sets"]["extended"]["eer"] < 0.2
    assert (path.parent / COHORT).is_file()


def test_last_checkpoint_and_cohort_cache(fake_run):
    hparams, _, _, last_weight = fake_run
    # test_sets as a user types it (a plain string is one name, not its letters)
    res = evaluate_run(hparams, "last", test_sets="original", device="cpu", validation=False)
    torch.testing.assert_close(hparams["embedder"].proj.weight, last_weight)
    assert res["checkpoint"]["meta"]["step"] == 20
    assert list(res["test_sets"]) == ["original"] and "validation" not in res
    # No validation trials, no calibration: min Cllr only.
    assert "calibration" not in res and "cllr" not in res["test_sets"]["original"]
    assert "min_cllr" in res["test_sets"]["original"]
    assert "cllr" not in res["test_sets"]["original"]["intervals"]
    cohort = results_path(hparams["output_folder"], "last").parent / COHORT
    mtime = cohort.stat().st_mtime_ns
    again = evaluate_run(hparams, "last", test_sets=["original"], device="cpu", validation=False)
    assert cohort.stat().st_mtime_ns == mtime  # cached cohort reused
    assert again["test_sets"] == res["test_sets"]
    # Capping the cohort's files per speaker invalidates the cache: computed anew.
    capped = evaluate_run(dict(hparams, cohort_max_files_per_speaker=1), "last",
                          test_sets=["original"], device="cpu", validation=False)
    assert cohort.stat().st_mtime_ns != mtime
    assert torch.load(cohort, weights_only=False)["max_files_per_speaker"] == 1
    assert capped["test_sets"]["original"]["as_norm"]["cohort_size"] == 6


def test_clear_errors(fake_run, tmp_path):
    hparams, _, _, _ = fake_run
    with pytest.raises(ValueError, match="test_sets"):
        evaluate_run(hparams, "best", test_sets=["nope"])
    with pytest.raises(ValueError, match="checkpoint must be"):
        evaluate_run(hparams, "middle")
    empty = dict(hparams, checkpointer=Checkpointer(tmp_path / "none", {}))
    with pytest.raises(EvaluationError, match="no checkpoint with a val_eer"):
        evaluate_run(empty, "best")
    missing = dict(hparams, manifest_folder=str(tmp_path / "nowhere"))
    with pytest.raises(ListError, match="manifest not found"):
        evaluate_run(missing, "best", device="cpu")


def test_noprogressbar_silences_the_embedding_bars(fake_run, tmp_path, capsys):
    """SpeechBrain's --noprogressbar (eval.py's run_opts) or noprogressbar in the hparams
    turns off the bars over the files embedded (test files and AS-norm cohort), as it does
    training's; the command line wins over the hparams, as in a Brain."""
    import speechbrain as sb

    hparams, _, _, _ = fake_run

    def bars(run, **kwargs):
        evaluate_run(dict(run, output_folder=str(tmp_path / str(len(bars.seen)))), "best",
                     device="cpu", **kwargs)
        bars.seen.append(capsys.readouterr().err)
        return [name for name in ("embeddings (best)", "cohort (train set)")
                if name in bars.seen[-1]]
    bars.seen = []

    assert bars(hparams) == ["embeddings (best)", "cohort (train set)"]
    _, run_opts, _ = sb.parse_arguments(["x.yaml", "--noprogressbar"])
    assert bars(hparams, run_opts=run_opts) == []
    assert bars(dict(hparams, noprogressbar=True)) == []
    _, run_opts, _ = sb.parse_arguments(["x.yaml", "--device", "cpu"])
    assert bars(dict(hparams, noprogressbar=True), run_opts=run_opts) == []
    assert bars(hparams, run_opts={"noprogressbar": True}) == []
    assert bars(dict(hparams, noprogressbar=True), run_opts={"noprogressbar": False}) \
        == ["embeddings (best)", "cohort (train set)"]


def test_same_checkpoint_for_best_and_last_is_evaluated_once(fake_run, tmp_path):
    hparams, _, _, _ = fake_run
    # A run whose only checkpoint is both best and last.
    single = dict(hparams, output_folder=str(tmp_path / "single"))
    single["checkpointer"] = Checkpointer(tmp_path / "single" / "save",
                                          {"embedder": hparams["embedder"]})
    single["checkpointer"].save_checkpoint(meta={"val_eer": 0.1, "step": 5})
    last = evaluate_run(single, "last", device="cpu")
    best = evaluate_run(single, "best", device="cpu")
    assert best["reused_from"] == "last" and best["checkpoint"]["which"] == "best"
    assert best["test_sets"] == last["test_sets"] and best["validation"] == last["validation"]
    folder = results_path(single["output_folder"], "best").parent
    for entry in best["test_sets"].values():
        assert (folder / entry["scores"]).is_file()
        assert (folder / entry["as_norm"]["scores"]).is_file()
    # Another AS-norm top_k cannot be copied: evaluated afresh.
    again = evaluate_run(dict(single, as_norm_top_k=2), "best", device="cpu")
    assert "reused_from" not in again and again["test_sets"]["original"]["as_norm"]["top_k"] == 2
    # Nor another AS-norm variant: the original's one-sided one, over the whole cohort.
    again = evaluate_run(dict(single, as_norm_variant="one_sided_whole_cohort"), "best",
                         device="cpu")
    assert "reused_from" not in again
    assert {k: again["test_sets"]["original"]["as_norm"][k] for k in ("variant", "top_k")} \
        == {"variant": "one_sided_whole_cohort", "top_k": None}
    # Nor another calibration prior.
    again = evaluate_run(dict(single, calibration_prior=0.05), "best", device="cpu")
    assert "reused_from" not in again and again["calibration"]["prior"] == 0.05
    # Nor other intervals; without them results.json has none.
    again = evaluate_run(dict(single, calibration_prior=0.05, interval_draws=50), "best",
                         device="cpu")
    assert "reused_from" not in again
    assert again["test_sets"]["hard"]["as_norm"]["intervals"]["draws"] == 50
    again = evaluate_run(dict(single, intervals=False), "best", device="cpu")
    assert "reused_from" not in again and "intervals" not in again["test_sets"]["original"]


def test_test_precision_selection_and_fallback():
    """fp16 autocast on a GPU as the study tested; fp32 off a GPU (logged) or when asked."""
    import contextlib
    import warnings

    from lowres.io.hparams import HparamsError
    from lowres.scoring.eval_settings import check_values, precision_on, test_autocast

    assert precision_on("fp16", "cpu") == ("fp32", "test_precision fp16 needs a GPU: fp32 on "
                                                   "cpu instead")
    assert precision_on("fp16", "cuda:0") == ("fp16", "")
    assert precision_on("fp32", "cuda") == ("fp32", "")
    assert isinstance(test_autocast("fp16", "cpu"), contextlib.nullcontext)
    assert isinstance(test_autocast("fp32", "cuda"), contextlib.nullcontext)
    with warnings.catch_warnings():  # no CUDA here: torch warns that it would disable it
        warnings.simplefilter("ignore")
        ctx = test_autocast("fp16", "cuda")
    assert isinstance(ctx, torch.autocast) and ctx.device == "cuda"
    assert ctx.fast_dtype == torch.float16
    check_values({"test_sets": "original", "test_precision": "fp32"})
    with pytest.raises(HparamsError, match="test_precision='bf16'"):
        check_values({"test_sets": "original", "test_precision": "bf16"})
    with pytest.raises(HparamsError, match="as_norm_top_k=0"):
        check_values({"test_sets": "original", "as_norm_top_k": 0})
    for key, bad in (("intervals", "yes"), ("interval_level", 95), ("interval_level", 1.0),
                     ("interval_draws", 0), ("interval_draws", 10.5), ("interval_seed", -1)):
        with pytest.raises(HparamsError, match=f"invalid hparam {key}={bad!r}"):
            check_values({"test_sets": "original", key: bad})


def test_unused_evaluation_keys():
    """What a model card leaves out: AS-norm's settings without post_process_scores, the
    top k unless the two-sided variant takes it, the intervals' settings without them."""
    from lowres.scoring.eval_settings import unused_keys

    base = {"post_process_scores": False, "as_norm_variant": "two_sided_top_k",
            "as_norm_top_k": 300, "cohort_max_files_per_speaker": None, "intervals": True}
    assert unused_keys(base) == {"as_norm_top_k", "as_norm_variant",
                                 "cohort_max_files_per_speaker"}
    assert unused_keys({**base, "post_process_scores": True}) == set()
    assert unused_keys({**base, "post_process_scores": True,
                        "as_norm_variant": "one_sided_whole_cohort"}) == {"as_norm_top_k"}
    assert "cohort_max_files_per_speaker" not in unused_keys(
        {**base, "enroll_training_data": True})
    assert {"interval_draws", "interval_seed", "interval_level"} <= unused_keys(
        {**base, "intervals": False})


def test_fp16_on_cpu_is_tested_in_fp32(fake_run):
    hparams, _, _, _ = fake_run
    res = evaluate_run(dict(hparams, test_precision="fp16"), "best", test_sets=["original"],
                       device="cpu")
    assert res["test_precision"] == "fp32" and res["diverged"] is False


def test_diverged_runs_are_reported_as_diverged(fake_run, tmp_path):
    """Never the untrained model's EER: no finite validation -> no best; non-finite
    embeddings -> nothing to test; train.py's record is carried into results.json."""
    from lowres.scoring.evaluation import summary

    hparams, _, _, _ = fake_run
    run = dict(hparams, output_folder=str(tmp_path / "nan"))
    run["checkpointer"] = Checkpointer(tmp_path / "nan" / "save",
                                       {"embedder": hparams["embedder"]})
    with torch.no_grad():
        hparams["embedder"].proj.weight.fill_(float("nan"))
    run["checkpointer"].save_checkpoint(meta={"step": 5})  # a validation with a NaN EER
    best = evaluate_run(run, "best", device="cpu")
    assert best["test_sets"] == {} and best["checkpoint"]["name"] is None
    assert best["diverged"] == {"step": 5, "reason": "no validation of training had a finite EER"}
    assert read_results(run["output_folder"]) == best
    last = evaluate_run(run, "last", device="cpu")
    assert last["test_sets"] == {} and last["checkpoint"]["meta"]["step"] == 5
    assert last["diverged"]["reason"] == "24 of 24 embeddings are not finite"
    assert summary(last).startswith("diverged at step 5")
    # diverged late, after a good validation: the best is tested and the run is marked
    mark_diverged(hparams["output_folder"], 30, "the loss was not finite")
    res = evaluate_run(hparams, "best", test_sets=["original"], device="cpu")
    assert res["diverged"] == {"step": 30, "reason": "the loss was not finite"}
    assert 0 <= res["test_sets"]["original"]["eer"] < 0.5


@pytest.mark.parametrize(("training", "device", "dtype"),
                         [("bf16", "cuda:0", torch.bfloat16), ("fp16", "cuda:0", torch.float16),
                          ("fp32", "cuda:0", torch.float16), ("bf16", "cpu", None)])
def test_test_embeddings_autocast_in_the_training_precision_family(monkeypatch, training,
                                                                   device, dtype):
    """test_precision fp16 (the default): a bf16-trained run embeds its test files in bf16
    on a GPU (its activations may exceed fp16's range: it would read as diverged), the
    others in fp16; fp32 off a GPU."""
    import pandas as pd

    from lowres.scoring import evaluation

    seen = []

    class Autocast:  # torch.autocast as the embedding sees it (no GPU here)
        def __init__(self, device_type, dtype):
            self.args = (device_type, dtype)

        def __enter__(self):
            seen.append(self.args)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch, "autocast", Autocast)
    monkeypatch.setattr(evaluation, "extract_embeddings", lambda *a, **k: torch.zeros(1, 2))
    files = pd.DataFrame({"wav": ["a.wav"], "duration": [1.0]})
    hparams = {"precision": training, "test_precision": "fp16"}
    evaluation._embed(None, files, hparams, device, "test")
    assert seen == ([("cuda", dtype)] if dtype else [])
    expected = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[dtype]
    assert evaluation.effective_test_precision(hparams, device)[0] == expected


def test_a_list_of_one_speaker_has_no_intervals(caplog):
    """A debug run may score a few trials of one speaker: no speakers to resample, logged."""
    from lowres.scoring.trials import trial_intervals

    trials = pd.DataFrame({"label": [1, 1], "path1": ["id1/a/1.wav", "id1/a/2.wav"],
                           "path2": ["id1/b/1.wav", "id1/b/2.wav"]})
    settings = {"level": 0.95, "draws": 10, "seed": 0}
    assert trial_intervals(np.array([0.5, 0.7]), trials, None, settings, "original") is None
    assert "original: no intervals: its trials have 1 speaker(s)" in caplog.text


def test_a_list_whose_paths_name_no_speaker_has_no_intervals(caplog):
    """Paths without the speaker's folder (``a_1.wav``) make a target trial look like two
    speakers: the evaluation keeps its metrics and says why it has no intervals."""
    from lowres.scoring.trials import trial_intervals

    trials = pd.DataFrame({"label": [1, 0, 1, 0], "path1": ["a_1.wav", "a_1.wav", "b_1.wav",
                                                            "b_1.wav"],
                           "path2": ["a_2.wav", "b_2.wav", "b_2.wav", "a_2.wav"]})
    settings = {"level": 0.95, "draws": 10, "seed": 0}
    scores = np.array([0.9, 0.1, 0.8, 0.2])
    assert trial_intervals(scores, trials, None, settings, "original") is None
    assert "original: no intervals: 2 target trial(s) pair two different speakers" in caplog.text
