"""lowres.export: SpeechBrain pretrained-model folders and ONNX embedders of hand-made runs.

Each run is a real run folder (the recipe's resolved hyperparams.yaml, SpeechBrain
checkpoints, label encoder, results.json, a synthetic corpus marker and stats.json) with
random weights, so the tests check the export's arithmetic, not training. The exported
folder is loaded by SpeechBrain in a fresh Python process that never imports lowres.
"""

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import ROOT
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.checkpoints import Checkpointer

from lowres.export.__main__ import main as export_main
from lowres.export.run import corpus_found, is_synthetic
from lowres.io.atomic import write_json
from lowres.io.audio import load_audio
from lowres.io.hparams import load_hparams, resolved_yaml
from lowres.io.lists import write_manifest
from lowres.io.run_folder import (
    hyperparams_path,
    label_encoder_path,
    read_results,
    save_folder,
    write_results,
)
from lowres.scoring.speaker_verifier import SpeakerVerifier
from lowres.scoring.verify import main as verify_main

torch.set_num_threads(1)

HPARAMS = ROOT / "recipes" / "VoxCeleb" / "hparams"
SPEAKERS = [f"id0000{i}" for i in range(4)]
FAMILIES = {
    "xvector": ("xvector_tiny_few.yaml", {}),
    "ecapa": ("ecapa_tiny_few.yaml", {"ecapa_channels": 64}),
    "wav2vec2": ("wav2vec2_tiny_few.yaml", {}),
}
THRESHOLD = 0.4321  # the run's validation EER threshold
CALIBRATION = {"scale": 9.5, "offset": -3.25, "prior": 0.5}
# its decision threshold: the score whose calibrated LLR is log(19), the Bayes threshold at
# p_target 0.05 (python -m lowres.verify's default decision)
DECISION = (np.log(19) + 3.25) / 9.5


def tone(f0, seconds, seed):
    t = np.arange(int(seconds * 16000)) / 16000
    rng = np.random.default_rng(seed)
    wav = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))
    return (0.1 * wav + 0.01 * rng.normal(size=t.size)).astype(np.float32)


def make_run(root, family, overrides=None):
    """A run folder of ``family`` (its yaml with ``overrides``) with random weights, trained
    'on the synthetic corpus'."""
    from lowres.io.corpus_notice import NOTICE

    cell, extra = FAMILIES[family]
    extra = {**extra, **(overrides or {})}
    data, out = root / "corpus", root / "run"
    (data / "wav").mkdir(parents=True)
    (data / "README.txt").write_text(NOTICE + "\n")
    rows = []
    for i, spk in enumerate(SPEAKERS):
        path = data / "wav" / f"{spk}.wav"
        sf.write(path, tone(120 + 40 * i, 1.0, i), 16000)
        rows.append({"ID": spk, "duration": 1.0, "wav": str(path), "spk_id": spk,
                     "session": "s0", "gender": "m"})
    subset = root / "manifests" / "tiny_few"
    subset.mkdir(parents=True)
    write_manifest(subset / "train.csv", pd.DataFrame(rows))
    stats = {"files": 4, "speakers": 4, "speakers_by_gender": {"m": 4}, "sessions": 4,
             "hours": 0.001, "sessions_per_speaker": {"min": 1, "max": 1, "mean": 1.0},
             "files_per_speaker": {"min": 1, "max": 1, "mean": 1.0}}
    write_json(subset / "stats.json", {"train": stats, "val": stats,
                                       "val_trials": {"trials": 6, "target": 2}})
    overrides = {"manifest_folder": str(root / "manifests"), "output_folder": str(out),
                 "n_speakers": len(SPEAKERS), **extra}
    if family == "wav2vec2":
        from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2

        overrides["wav2vec2_source"] = str(save_tiny_wav2vec2(root / "w2v"))
    out.mkdir()
    hyperparams_path(out).write_text(resolved_yaml(HPARAMS / cell, overrides))
    hparams = load_hparams(hyperparams_path(out))
    gen = torch.Generator().manual_seed(0)
    for name, buf in hparams["embedder"].named_buffers():  # trained-looking batch norms
        if name.endswith("running_mean"):
            buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
        elif name.endswith("running_var"):
            buf.copy_(0.5 + torch.rand(buf.shape, generator=gen))
    with torch.no_grad():  # trained-looking LoRA and adapters (both start as the identity)
        for name, param in hparams["embedder"].named_parameters():
            if ".lora_B." in name or ".bottleneck_adapter.up." in name:
                param.copy_(0.2 * torch.randn(param.shape, generator=gen))
    Checkpointer(save_folder(out), {"embedder": hparams["embedder"],
                                "classifier": hparams["classifier"]}
                 ).save_checkpoint(meta={"val_eer": 0.125, "step": 40})
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(SPEAKERS)
    encoder.save(label_encoder_path(out))
    metrics = {"n_trials": 10, "eer": 0.2, "eer_threshold": 0.3, "min_dcf_0.01": 0.61,
               "min_dcf_0.05": 0.55, "min_cllr": 0.7, "cllr": 0.8, "act_dcf_0.05": 0.66}
    write_results(out, "best", {
        "checkpoint": {"which": "best", "meta": {"val_eer": 0.125, "step": 40}},
        "calibration": CALIBRATION,
        "validation": {"n_trials": 6, "eer": 0.125, "eer_threshold": THRESHOLD},
        "test_precision": "fp32",  # the yaml's fp16, as tested on a CPU
        "test_sets": {"original": {**metrics, "as_norm": {**metrics, "eer": 0.15,
                                                          "top_k": 300}},
                      "hard": metrics},
    })
    return out


def recordings(root):
    """Two test recordings of different lengths."""
    wavs = []
    for name, f0, seconds in (("a", 150, 1.6), ("b", 230, 2.3)):
        sf.write(root / f"{name}.wav", tone(f0, seconds, 7), 16000)
        wavs.append(root / f"{name}.wav")
    return wavs


@pytest.fixture(scope="module", params=list(FAMILIES))
def exported(request, tmp_path_factory):
    """(family, run folder, exported SpeechBrain folder, ONNX file, two test recordings)."""
    root = tmp_path_factory.mktemp(request.param)
    run = make_run(root, request.param)
    sb, onnx = root / "sb", root / "onnx" / "embedding_model.onnx"
    assert export_main([str(run), "--out", str(sb), "--onnx", str(onnx)]) == 0
    return request.param, run, sb, onnx, recordings(root)


SPEECHBRAIN_ONLY = textwrap.dedent("""
    import json, sys
    import torch
    from speechbrain.inference.speaker import EncoderClassifier, SpeakerRecognition
    folder, cache, a, b = sys.argv[1:]
    model = EncoderClassifier.from_hparams(source=folder, savedir=cache + "/enc")
    wa, wb = model.load_audio(a), model.load_audio(b)
    ea, eb = model.encode_batch(wa[None]), model.encode_batch(wb[None])
    pair = model.encode_batch(torch.stack([wa, wb[:len(wa)]]))  # a batch of equal lengths
    probs, _, index, labels = model.classify_batch(wb[None])
    verifier = SpeakerRecognition.from_hparams(source=folder, savedir=cache + "/ver")
    score, _ = verifier.verify_files(a, b)
    print(json.dumps({"a": ea.flatten().tolist(), "b": eb.flatten().tolist(),
                      "pair": pair.reshape(2, -1).tolist(), "labels": labels,
                      "index": int(index), "probs": probs.flatten().tolist(),
                      "score": float(score), "threshold": verifier.hparams.threshold,
                      "lowres_imported": any(m.split(".")[0] == "lowres" for m in sys.modules)}))
""")


def speechbrain_outputs(sb, cache, a, b) -> dict:
    """SPEECHBRAIN_ONLY on the folder ``sb`` and recordings ``a``, ``b``, in a fresh Python
    process that must not import lowres."""
    proc = subprocess.run([sys.executable, "-c", SPEECHBRAIN_ONLY, str(sb), str(cache),
                           str(a), str(b)], cwd=cache, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["lowres_imported"] is False
    return got


def test_speechbrain_loads_the_folder_without_lowres(exported, tmp_path, capsys):
    family, run, sb, _, (a, b) = exported
    got = speechbrain_outputs(sb, tmp_path, a, b)
    verifier = SpeakerVerifier.from_run(run)
    ea, eb = verifier.embed(a), verifier.embed(b)
    torch.testing.assert_close(torch.tensor(got["a"]), ea, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor(got["b"]), eb, atol=1e-4, rtol=0)
    crop = verifier.embed(load_audio(b)[: load_audio(a).numel()])
    torch.testing.assert_close(torch.tensor(got["pair"]), torch.stack([ea, crop]), atol=1e-4,
                               rtol=0)
    # classify_batch: cosine to each training speaker, decoded to the run's labels
    classifier = load_hparams(hyperparams_path(run))["classifier"]
    Checkpointer(save_folder(run), {"classifier": classifier}).recover_if_possible()
    logits = classifier(eb[None, None]).flatten()
    torch.testing.assert_close(torch.tensor(got["probs"]), logits, atol=1e-4, rtol=0)
    assert got["index"] == int(logits.argmax()) and got["labels"] == [SPEAKERS[got["index"]]]
    # verify_files: the score lowres.verify prints (4 decimals); the yaml's threshold is the
    # one lowres.verify decides at
    assert verify_main([str(run), str(a), str(b)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert got["score"] == pytest.approx(float(printed[0].split()[1]), abs=5e-5 + 1e-6)
    assert printed[2].startswith(f"threshold {got['threshold']:.4f} (calibrated")
    assert got["threshold"] == round(DECISION, 4)


def test_folder_holds_tensors_only_and_a_model_card(exported):
    family, _, sb, _, _ = exported
    assert sorted(p.name for p in sb.iterdir()) == [
        "README.md", "classifier.ckpt", "embedding_model.ckpt", "hyperparams.yaml",
        "label_encoder.ckpt"]
    for name in ("classifier.ckpt", "embedding_model.ckpt"):
        state = torch.load(sb / name, weights_only=True)
        assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    yaml_text = (sb / "hyperparams.yaml").read_text()
    assert ":lowres." not in yaml_text
    card = (sb / "README.md").read_text()
    assert "SYNTHETIC" in card.split("## Architecture")[0]  # the warning comes first
    for fact in ("step 40", "12.50 %", "`tiny_few`: 4 files of 4 speakers", "20.00 %",
                 "15.00 %", "AS-norm (top 300)", "VoxCeleb1-H", "0.6100", f"{THRESHOLD:.4f}",
                 "hf upload USER/REPO", "vaessen2022training", "| lr |", "| 0.8000 | 0.6600 |",
                 "LLR = 9.5000 x cosine -3.2500", "has no lengths input", f"**{DECISION:.4f}**",
                 "calibrated at p_target 0.05: LLR >= 2.944",
                 f"verify_batch(wav_a[None], wav_b[None], threshold={DECISION:.4f})"):
        assert fact in card, fact


def test_model_card_shows_only_what_applies_and_no_local_path(exported):
    """The parameters of the LR schedule the run used (cyclic) and not the others', the
    precision the test ran in (results.json) and not the yaml's, and no path of this machine
    (a wav2vec2 run started from a local checkpoint: its folder name only)."""
    family, run, sb, _, _ = exported
    card = (sb / "README.md").read_text()
    assert "| lr_schedule | cyclic |" in card and "| base_lr |" in card
    assert "| one_cycle_half_steps |" not in card and "| final_lr |" not in card
    assert "| mhfa_heads |" not in card  # the sizes of a pooling the run did not use
    # the keys of an adaptation the run did not use
    assert "| lora_rank |" not in card and "| adapter_bottleneck |" not in card
    # augmentation and AS-norm were off: their switches say so, their settings are left out
    assert "| augment_noise | False |" in card and "| post_process_scores | False |" in card
    for key in ("augment_prob", "noise_snr_low", "speeds", "as_norm_top_k", "as_norm_variant"):
        assert f"| {key} |" not in card, key
    assert "- Trained:" not in card  # the run has no parameters.json
    if family == "wav2vec2":
        assert "- Backbone (`ssl_adaptation: full`): fine-tuned whole" in card
    assert "| test_precision | fp32 |" in card and "| test_precision | fp16 |" not in card
    for name in ("README.md", "hyperparams.yaml"):
        assert str(run.parent) not in (sb / name).read_text(), name
    if family == "wav2vec2":
        assert "started from the local checkpoint `w2v`" in card


CARD_CODE = re.compile(r"## Use\n.*?```python\n(.*?)```", re.S)


def test_model_card_code_decides_at_the_runs_threshold(synthetic_corpus, tmp_path):
    """Run as its model card says, with plain SpeechBrain, an exported folder calls two
    speakers of the synthetic corpus different when the run's threshold is above their
    score, which is above SpeechBrain's own default threshold (0.25)."""
    run = make_run(tmp_path, "xvector")
    wavs = sorted((synthetic_corpus / "voxceleb1" / "wav").glob("*/*/*.wav"))
    a = wavs[0]
    b = next(w for w in wavs if w.parts[-3] != a.parts[-3])  # another speaker
    score = SpeakerVerifier.from_run(run).score(a, b)
    assert score > 0.25  # so SpeechBrain's default would say "same"
    # the run's calibration: its decision at p_target 0.05 is the cosine score + 0.05
    results = read_results(run)
    results["calibration"] = {"scale": 10.0, "offset": float(np.log(19) - 10 * (score + 0.05)),
                              "prior": 0.5}
    write_results(run, "best", results)
    sb = tmp_path / "sb"
    assert export_main([str(run), "--out", str(sb)]) == 0
    code = CARD_CODE.search((sb / "README.md").read_text()).group(1)
    code = code.replace("THIS_FOLDER", str(sb)).replace('"a.wav"', repr(str(a))) \
        .replace('"b.wav"', repr(str(b)))
    code += 'import json\nprint(json.dumps({"score": float(score), "same": bool(same)}))\n'
    user = tmp_path / "user"
    user.mkdir()
    proc = subprocess.run([sys.executable, "-c", code], cwd=user, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["score"] == pytest.approx(score, abs=1e-4)
    assert got["same"] is False


def test_onnx_embeddings_equal_pytorch_on_several_lengths(exported):
    _, run, _, onnx, _ = exported
    assert_onnx_equals_pytorch(run, onnx)


def assert_onnx_equals_pytorch(run, onnx):
    """onnxruntime on ``onnx`` gives the run's lowres embeddings within 1e-3: a short and a
    long utterance, a batch of equal lengths."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    embedder = SpeakerVerifier.from_run(run).embedder
    gen = torch.Generator().manual_seed(3)
    for batch, seconds in ((1, 0.45), (1, 3.7), (3, 1.3)):
        wavs = 0.1 * torch.randn(batch, int(seconds * 16000), generator=gen)
        (out,) = session.run(["embedding"], {"waveform": wavs.numpy()})
        with torch.no_grad():
            ours = embedder(wavs, torch.ones(batch))
        assert out.shape == tuple(ours.shape)
        torch.testing.assert_close(torch.from_numpy(out), ours, atol=1e-3, rtol=0)


def test_mhfa_run_exports_as_onnx_and_is_refused_as_a_speechbrain_folder(tmp_path, capsys):
    """MHFA (ssl_pooling mhfa) is no module SpeechBrain or transformers has, and the folder
    ships no code: refused by name, nothing written. The ONNX graph is the embedder itself."""
    run = make_run(tmp_path, "wav2vec2", {"ssl_pooling": "mhfa", "mhfa_heads": 4,
                                          "mhfa_compression_dim": 16})
    sb, onnx = tmp_path / "sb", tmp_path / "onnx" / "embedding_model.onnx"
    assert export_main([str(run), "--out", str(sb)]) == 2
    assert "ssl_pooling='mhfa' cannot be exported as a SpeechBrain folder" in \
        capsys.readouterr().err
    assert not sb.exists() and not list(tmp_path.glob(".tmp-*"))
    assert SpeakerVerifier.from_run(run).embedder.pooling == "mhfa"
    assert export_main([str(run), "--onnx", str(onnx)]) == 0
    assert_onnx_equals_pytorch(run, onnx)


ADAPTED = {"lora": {"ssl_adaptation": "lora", "lora_rank": 4, "lora_alpha": 8},
           "adapter": {"ssl_adaptation": "adapter", "adapter_bottleneck": 8}}


@pytest.mark.parametrize("adaptation", list(ADAPTED))
def test_lora_and_adapter_runs_export_to_speechbrain_and_onnx(adaptation, tmp_path):
    """A LoRA run's folder holds a plain Wav2Vec2Model (LoRA folded into its weights), an
    adapter run's SpeechBrain's own adapter classes: plain SpeechBrain gives the run's
    embeddings within 1e-4, onnxruntime within 1e-3. The run's LoRA / adapter weights are
    far from the identity, so an export without them would differ by much more."""
    from lowres.io.run_folder import write_parameters
    from lowres.models.ssl_adaptation import parameter_counts

    run = make_run(tmp_path, "wav2vec2", ADAPTED[adaptation])
    hparams = load_hparams(hyperparams_path(run))
    counts = parameter_counts(torch.nn.ModuleDict(hparams["modules"]), hparams["embedder"])
    write_parameters(run, counts["trainable"], counts["total"], adaptation)
    sb, onnx = tmp_path / "sb", tmp_path / "onnx" / "embedding_model.onnx"
    assert export_main([str(run), "--out", str(sb), "--onnx", str(onnx)]) == 0
    a, b = recordings(tmp_path)
    got = speechbrain_outputs(sb, tmp_path, a, b)
    verifier = SpeakerVerifier.from_run(run)
    ea, eb = verifier.embed(a), verifier.embed(b)
    torch.testing.assert_close(torch.tensor(got["a"]), ea, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor(got["b"]), eb, atol=1e-4, rtol=0)
    assert_onnx_equals_pytorch(run, onnx)

    state = torch.load(sb / "embedding_model.ckpt", weights_only=True)
    assert not any("lora" in key for key in state)
    assert any(key.endswith("adapter_up_proj.weight") for key in state) == (
        adaptation == "adapter")
    with torch.no_grad():  # the run without its adaptation: far from its embeddings
        for name, param in verifier.embedder.named_parameters():
            if ".lora_B." in name or ".bottleneck_adapter.up." in name:
                param.zero_()
    assert (verifier.embed(a) - ea).abs().max() > 1e-2

    card = (sb / "README.md").read_text()
    assert f"- Backbone (`ssl_adaptation: {adaptation}`): " in card
    assert ("| lora_rank | 4 |" in card) == (adaptation == "lora")
    assert ("| adapter_bottleneck | 8 |" in card) == (adaptation == "adapter")
    assert "| lora_target_modules | q_proj, v_proj |" in card or adaptation != "lora"
    assert f"- Trained: {counts['trainable']:,} of the model's {counts['total']:,} parameters" \
        in card


@pytest.mark.parametrize("exported", ["xvector"], indirect=True)
def test_failed_self_check_writes_nothing(exported, tmp_path, monkeypatch, capsys):
    _, run, _, _, _ = exported
    import lowres.export.speechbrain_folder as folder_module

    monkeypatch.setattr(folder_module, "TOLERANCE", -1.0)
    assert export_main([str(run), "--out", str(tmp_path / "sb")]) == 2
    assert "differs from lowres" in capsys.readouterr().err
    assert not (tmp_path / "sb").exists() and not list(tmp_path.glob(".tmp-*"))


def test_clear_errors(tmp_path, capsys):
    assert export_main([str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert export_main([str(tmp_path), "--out", str(other)]) == 2
    assert "not an earlier lowres export" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(SystemExit):
        export_main([str(tmp_path)])  # neither --out nor --onnx


def test_synthetic_detection(tmp_path):
    from lowres.io.corpus_notice import NOTICE

    real, synthetic = tmp_path / "vox", tmp_path / "synth"
    for folder in (real, synthetic):
        folder.mkdir()
    (real / "README.txt").write_text("VoxCeleb, as downloaded\n")
    (synthetic / "README.txt").write_text(NOTICE + "\n")
    assert is_synthetic({"data_folder": str(real)}) is None
    assert is_synthetic({"data_folder": str(synthetic)}) == NOTICE
    # without data_folder: found above the training files of the manifest
    (synthetic / "wav").mkdir()
    write_manifest(tmp_path / "train.csv", pd.DataFrame([{
        "ID": "x", "duration": 1.0, "wav": str(synthetic / "wav" / "x.wav"), "spk_id": "s",
        "session": "a", "gender": "m"}]))
    assert is_synthetic({"data_folder": None, "train_csv": str(tmp_path / "train.csv")}) == NOTICE
    assert corpus_found({"data_folder": str(real)})
    assert not corpus_found({"data_folder": str(tmp_path / "elsewhere"), "train_csv": None})
