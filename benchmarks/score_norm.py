"""Time cosine scoring + AS-norm on a VoxCeleb1-E-sized job with random embeddings.

145,000 unique embeddings (dim 192), a cohort of 5,994 speaker means (the
VoxCeleb2 dev speakers), 579,818 trials, top_k 300.

    python benchmarks/score_norm.py [--n_emb 145000] [--dim 192] [--cohort 5994]
                                    [--trials 579818] [--top_k 300] [--threads 1]
"""

import argparse
import time

import torch

from lowres.scoring.score_norm import as_norm_scores, cohort_statistics, cosine_trial_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n_emb", type=int, default=145_000)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--cohort", type=int, default=5994)
    ap.add_argument("--trials", type=int, default=579_818)
    ap.add_argument("--top_k", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(args.n_emb, args.dim, generator=g)
    cohort = torch.randn(args.cohort, args.dim, generator=g)
    left = torch.randint(0, args.n_emb, (args.trials,), generator=g)
    right = torch.randint(0, args.n_emb, (args.trials,), generator=g)

    t0 = time.perf_counter()
    cosine_trial_scores(emb, left, right)
    t1 = time.perf_counter()
    cohort_statistics(emb[:20000], cohort, args.top_k)
    t2 = time.perf_counter()
    as_norm_scores(emb, left, right, cohort, args.top_k)
    t3 = time.perf_counter()
    print(f"{args.n_emb} embeddings x dim {args.dim}, cohort {args.cohort}, {args.trials} trials, "
          f"top_k {args.top_k}, {args.threads} thread(s)")
    print(f"cosine scores             : {t1 - t0:6.2f} s")
    print(f"cohort stats, 20k emb only: {t2 - t1:6.2f} s")
    print(f"AS-norm, whole job        : {t3 - t2:6.2f} s")


if __name__ == "__main__":
    main()
