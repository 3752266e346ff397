"""The evaluation's settings: checked before training starts, and the precision the test
embeddings run in.

train.py checks them at its start (:func:`check_values`), so a long run never fails at its
end for a value it could have refused; the evaluation and eval.py check them too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch

from lowres.io.hparams import invalid_hparam
from lowres.io.lists import test_set_names
from lowres.scoring import bootstrap
from lowres.scoring.checkpoints import AVERAGE_BY
from lowres.scoring.score_norm import AS_NORM_VARIANTS

__all__ = ["OLD_AS_NORM_VARIANT", "TEST_PRECISIONS", "as_norm_top_k", "check_values",
           "effective_test_precision", "interval_settings", "precision_on", "test_autocast",
           "unused_keys"]

OLD_AS_NORM_VARIANT = "two_sided_top_k"  # the only one before as_norm_variant existed
DEFAULT_TOP_K = 300
TEST_PRECISIONS = ("fp16", "fp32")


def check_values(values: Mapping) -> None:
    """Raise HparamsError for the first invalid evaluation setting of ``values``.

    train.py calls it before its first training step (so a long run never fails at its
    end for a value it could have refused at its start), eval.py and evaluate_run too.
    """

    def one_of(key, choices, default):
        if values.get(key, default) not in choices:
            raise invalid_hparam(key, values.get(key), f"must be one of {', '.join(choices)}")

    test_set_names(values.get("test_sets"))
    one_of("test_precision", TEST_PRECISIONS, "fp16")
    for key in ("post_process_scores", "enroll_training_data", "intervals"):
        if not isinstance(values.get(key, False), bool):
            raise invalid_hparam(key, values[key], "must be true or false")
    one_of("as_norm_variant", AS_NORM_VARIANTS, OLD_AS_NORM_VARIANT)
    one_of("average_checkpoints_by", AVERAGE_BY, "last")
    for key, minimum, optional in (("as_norm_top_k", 1, False), ("eval_batch_size", 1, False),
                                   ("average_checkpoints", 0, False),
                                   ("eval_num_workers", 0, False),
                                   ("interval_draws", 1, False), ("interval_seed", 0, False),
                                   ("cohort_max_files_per_speaker", 1, True)):
        v = values.get(key)
        if key in values and not (optional and v is None) and (
                isinstance(v, bool) or not isinstance(v, int) or v < minimum):
            raise invalid_hparam(key, v, f"must be an integer >= {minimum}"
                                 + (" or null" if optional else ""))
    v = values.get("eval_max_batch_seconds", 1.0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise invalid_hparam("eval_max_batch_seconds", v, "must be a positive number")
    v = values.get("interval_level", bootstrap.LEVEL)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
        raise invalid_hparam("interval_level", v, "must be a number between 0 and 1, "
                             "e.g. 0.95")


def as_norm_top_k(values: Mapping) -> int | None:
    """The number of closest cohort scores AS-norm takes, None when its variant takes the
    whole cohort (one_sided_whole_cohort)."""
    if values.get("as_norm_variant", OLD_AS_NORM_VARIANT) != "two_sided_top_k":
        return None
    return int(values.get("as_norm_top_k", DEFAULT_TOP_K))


def unused_keys(values: Mapping) -> set[str]:
    """The evaluation keys of ``values`` that changed no result: AS-norm's without
    post_process_scores (its top k unless the variant takes it), the cohort's cap without a
    cohort, the intervals' without intervals."""
    unused = set()
    post = values.get("post_process_scores") is True
    if not post or as_norm_top_k(values) is None:
        unused.add("as_norm_top_k")
    if not post:
        unused.add("as_norm_variant")
    if not post and values.get("enroll_training_data") is not True:
        unused.add("cohort_max_files_per_speaker")
    if values.get("intervals", True) is not True:
        unused |= {"interval_level", "interval_draws", "interval_seed"}
    return unused


def interval_settings(values: Mapping) -> dict | None:
    """``{"level", "draws", "seed"}`` of the evaluation's speaker-bootstrap intervals, or None
    when ``intervals`` is false; hparams that predate the keys get the defaults of
    :mod:`lowres.scoring.bootstrap` (the yaml's)."""
    if not values.get("intervals", True):
        return None
    return {"level": float(values.get("interval_level", bootstrap.LEVEL)),
            "draws": int(values.get("interval_draws", bootstrap.DRAWS)),
            "seed": int(values.get("interval_seed", bootstrap.SEED))}


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
