"""Checkpoint averaging (issue 13): the averaged embedder is the mean of the chosen
checkpoints' weights, results.json names them, and it is off by default."""


import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer
from test_evaluation import fake_run  # noqa: F401  (the fixture)
from test_safe_loading import plant

from lowres.io.hparams import HparamsError
from lowres.io.run_folder import (
    hyperparams_path,
    read_results,
    save_folder,
    write_results,
)
from lowres.io.tensor_files import UnsafeFileError
from lowres.scoring.checkpoints import EvaluationError, checkpoints_to_average, load_averaged
from lowres.scoring.eval_settings import check_values
from lowres.scoring.evaluation import evaluate_run


def bn_run(tmp_path, eers):
    """A Linear + BatchNorm module saved once per val_eer (step 10, 20, ...) with
    different weights and BatchNorm counters; returns (module, checkpointer, states)."""
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ckpt = Checkpointer(save_folder(tmp_path), {"embedder": module})
    states = []
    for i, val_eer in enumerate(eers):
        with torch.no_grad():
            for p in module.parameters():
                p.normal_()
            module[1].running_mean.normal_()
        module[1].num_batches_tracked.fill_(10 * (i + 1))
        ckpt.save_checkpoint(meta={"val_eer": val_eer, "step": 10 * (i + 1)})
        states.append({k: v.clone() for k, v in module.state_dict().items()})
    # an intra-epoch (timed) checkpoint: no step, never averaged
    ckpt.save_checkpoint(meta={"intra": True})
    return module, ckpt, states


@pytest.mark.parametrize(("by", "chosen"), [("last", [2, 3]), ("best", [0, 2])])
def test_average_is_the_mean_of_the_chosen_checkpoints(tmp_path, by, chosen):
    module, ckpt, states = bn_run(tmp_path, [0.1, 0.4, 0.2, 0.3])
    picked = checkpoints_to_average(ckpt, 2, by)
    assert [c.meta["step"] for c in picked] == [10 * (i + 1) for i in chosen]
    load_averaged({"embedder": module, "checkpointer": ckpt, "average_checkpoints": 2,
                   "average_checkpoints_by": by})
    got = module.state_dict()
    for key in ("0.weight", "0.bias", "1.weight", "1.running_mean", "1.running_var"):
        torch.testing.assert_close(got[key], sum(states[i][key] for i in chosen) / 2)
    # an integer counter is not averaged into a float: the newest checkpoint's
    assert got["1.num_batches_tracked"].dtype == torch.long
    assert int(got["1.num_batches_tracked"]) == 10 * (chosen[-1] + 1)


def test_results_json_names_the_averaged_checkpoints(fake_run):  # noqa: F811
    hparams, _, best_weight, last_weight = fake_run
    with pytest.raises(EvaluationError, match="average_checkpoints"):
        evaluate_run(hparams, "averaged", test_sets="original", device="cpu")  # off by default
    res = evaluate_run(dict(hparams, average_checkpoints=2), "averaged", test_sets="original",
                       device="cpu", validation=False)
    torch.testing.assert_close(hparams["embedder"].proj.weight, (best_weight + last_weight) / 2)
    assert read_results(hparams["output_folder"], "averaged") == res
    assert res["checkpoint"]["which"] == "averaged"
    assert res["averaged"]["by"] == "last" and res["averaged"]["n"] == 2
    assert [c["meta"]["step"] for c in res["averaged"]["checkpoints"]] == [10, 20]
    assert "averaged" not in evaluate_run(hparams, "best", test_sets="original", device="cpu",
                                          validation=False)


def test_bad_averaging_keys_are_refused():
    for bad in ({"average_checkpoints": -1}, {"average_checkpoints": 1.5},
                {"average_checkpoints_by": "first"}):
        with pytest.raises(HparamsError, match=next(iter(bad))):
            check_values({"test_sets": "original", **bad})


def test_results_columns_name_parent_and_averaging(tmp_path):
    from lowres.study.results.frame import collect

    def run(name, hp, averaged=None):
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        hyperparams_path(folder).write_text(f"model_name: ecapa\nsubset: tiny_few\n{hp}")
        sets = {"test_sets": {"original": {"eer": 0.1, "n_trials": 4}}, "diverged": False}
        write_results(folder, "best", sets)
        if averaged:
            write_results(folder, "averaged", {
                **sets, "test_sets": {"original": {"eer": 0.08, "n_trials": 4}},
                "averaged": averaged})

    run("a", "init_from_run: null\n")
    run("b", "init_from_run: /runs/a\n", {"by": "best", "n": 3, "checkpoints": []})
    frame = collect(tmp_path / "runs").set_index("run")
    assert frame.loc["a", "parent_run"] == "" and frame.loc["a", "averaged"] == ""
    assert frame.loc["b", "parent_run"] == "/runs/a" and frame.loc["b", "averaged"] == "best 3"
    assert frame.loc["b", "averaged_eer_pct_original"] == pytest.approx(8.0)
    assert frame.loc["b", "eer_pct_original"] == pytest.approx(10.0)


def test_averaged_checkpoints_load_through_the_safe_loader_onto_the_cpu(tmp_path,
                                                                       monkeypatch):
    """A run trained on a GPU saved its weights tagged cuda:0: eval.py on a CPU-only
    machine averages them on the CPU; a checkpoint whose unpickling could run code is
    refused with the file named (UnsafeFileError, which eval.py reports), as every other
    load of a run folder refuses it."""
    with monkeypatch.context() as m:  # torch.save tags every storage as a GPU's would
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        module, ckpt, states = bn_run(tmp_path, [0.1, 0.2])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    hparams = {"embedder": module, "checkpointer": ckpt, "average_checkpoints": 2}
    load_averaged(hparams)
    torch.testing.assert_close(module.state_dict()["0.weight"],
                               (states[0]["0.weight"] + states[1]["0.weight"]) / 2)

    marker = tmp_path / "PWNED"
    plant(checkpoints_to_average(ckpt, 2, "last")[0].paramfiles["embedder"], marker)
    with pytest.raises(UnsafeFileError, match="embedder.ckpt: refused"):
        load_averaged(hparams)
    assert not marker.exists()
