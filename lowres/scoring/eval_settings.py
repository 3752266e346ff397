"""The evaluation's settings: checked before training starts, and the precision the test
embeddings run in.

train.py checks them at its start (:func:`check_values`), so a long run never fails at its
end for a value it could have refused; the evaluation and eval.py check them too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch

from lowres.io.hparams import HparamsError
from lowres.io.lists import test_set_names
from lowres.scoring.checkpoints import AVERAGE_BY
from lowres.scoring.score_norm import AS_NORM_VARIANTS

__all__ = ["OLD_AS_NORM_VARIANT", "TEST_PRECISIONS", "check_values",
           "effective_test_precision", "precision_on", "test_autocast"]

OLD_AS_NORM_VARIANT = "two_sided_top_k"  # the only one before as_norm_variant existed
TEST_PRECISIONS = ("fp16", "fp32")


def check_values(values: Mapping) -> None:
    """Raise HparamsError for the first invalid evaluation setting of ``values``.

    train.py calls it before its first training step (so a long run never fails at its
    end for a value it could have refused at its start), eval.py and evaluate_run too.
    """

    def bad(key, why):
        raise HparamsError(f"invalid hparam {key}={values.get(key)!r}: {why}")

    def integer(key, minimum, optional=False):
        v = values.get(key)
        if optional and v is None:
            return
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            bad(key, f"must be an integer >= {minimum}" + (" or null" if optional else ""))

    test_set_names(values.get("test_sets"))
    if values.get("test_precision", "fp16") not in TEST_PRECISIONS:
        bad("test_precision", f"must be one of {', '.join(TEST_PRECISIONS)}")
    for key in ("post_process_scores", "enroll_training_data"):
        if not isinstance(values.get(key, False), bool):
            bad(key, "must be true or false")
    if values.get("as_norm_variant", OLD_AS_NORM_VARIANT) not in AS_NORM_VARIANTS:
        bad("as_norm_variant", f"must be one of {', '.join(AS_NORM_VARIANTS)}")
    if values.get("average_checkpoints_by", "last") not in AVERAGE_BY:
        bad("average_checkpoints_by", f"must be one of {', '.join(AVERAGE_BY)}")
    for key, minimum, optional in (("as_norm_top_k", 1, False), ("eval_batch_size", 1, False),
                                   ("average_checkpoints", 0, False),
                                   ("eval_num_workers", 0, False),
                                   ("cohort_max_files_per_speaker", 1, True)):
        if key in values:
            integer(key, minimum, optional)
    v = values.get("eval_max_batch_seconds", 1.0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        bad("eval_max_batch_seconds", "must be a positive number")


def precision_on(precision: str, device, key: str = "test_precision") -> tuple[str, str]:
    """What ``precision`` (the value of hparam ``key``) runs in on ``device``, and a note
    when it falls back: fp16 (autocast) needs a GPU, elsewhere it is fp32."""
    if precision == "fp16" and torch.device(device).type != "cuda":
        return "fp32", f"{key} fp16 needs a GPU: fp32 on {device} instead"
    return precision, ""


def effective_test_precision(hparams: dict, device) -> tuple[str, str]:
    """What a run's test embeddings run in on ``device``, and a note when it is not
    ``test_precision`` itself: fp16 is half-precision autocast on a GPU in the training
    precision's family, so bf16 for a bf16-trained run (its activations may exceed fp16's
    range, and the run would be reported as diverged); fp32 off a GPU."""
    precision = hparams.get("test_precision", "fp16")
    if precision == "fp16" and hparams.get("precision") == "bf16" \
            and torch.device(device).type == "cuda":
        return "bf16", "test_precision fp16 of a bf16-trained run: bf16 autocast instead"
    return precision_on(precision, device)


def test_autocast(precision: str, device):
    """Autocast context of the test embeddings in ``precision`` (as
    :func:`effective_test_precision` resolves it): fp16 or bf16 on a GPU, else none (fp32)."""
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
    if precision in dtypes and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=dtypes[precision])
    return contextlib.nullcontext()
