#!/usr/bin/env bash
# One prepared check of the recipes on a lent GPU machine (< 8 minutes on one H100/H200).
# Never run by CI or the tests.
#
#   benchmarks/gpu_check.sh [--cpu] [--keep DIR]
#
# Runs, on a synthetic corpus it makes (prepare.synthetic --preset small, prepare.voxceleb,
# as tests/conftest.py) and random wav2vec2 checkpoints (lowres.tiny_wav2vec2):
#   recipe_<model>  train.py end to end on CUDA for x-vector, ECAPA-TDNN and wav2vec2-base:
#                   fp16 training, validation (valid_precision as_training) and testing
#                   (test_precision fp16); results.json must say test_precision fp16
#   averaged        training with average_checkpoints 2, then eval.py --checkpoint averaged
#   pretrain        pretrain.py for a few steps, alone and under torchrun (nccl, 1 process)
#   ddp_2gpu        train.py under torchrun --nproc_per_node 2 (SKIP without 2 GPUs)
#   switches_*      the step-time switches of benchmarks/RESULTS.md ("To measure on a GPU:
#                   the step-time switches"): train_throughput.py before and after each
#                   switch, the recipe eager vs fast (train losses every 10 steps), and
#                   last the slowest to compile, --compile_mode max-autotune
#   adaptation_throughput  train_throughput.py --adaptation_methods all: wav2vec2-base
#                   trained as each method of hparams/grids/adaptation.yaml, its trainable
#                   and total parameters, steps/s and peak memory (before switches_max_autotune)
# Past BUDGET_S seconds the commands left are skipped (SKIP) and at DEADLINE_S a command
# still running is stopped (FAIL, "timed out"), so that it ends within 8 minutes.
# One line per check, "PASS|FAIL|SKIP <check>: <detail>"; indented lines under a check
# are its measurements (or, under a FAIL, the tail of its log). It goes on after a
# failure and exits 1 if any check failed.
#
# --cpu: the same checks on the CPU at the smallest sizes (fp16 falls back to fp32 there,
# gloo instead of nccl, the 2-GPU check skipped), to test this script without a GPU.
# --keep DIR: scratch files (corpus, runs, logs) in DIR, kept; otherwise a temporary
# folder, removed at the end. PYTHON (default: python) is the interpreter.
set -u

# ---- sizes (GPU; the --cpu values are set in parse_args) ---------------------------------
STEPS=10                 # training steps of each recipe run
VAL_INTERVAL=5           # validation every N steps (val_schedule steps)
BATCH=100                # global batch of the recipe runs (the recipes own)
WORKERS=4                # data loader workers of the recipe runs
W2V2_SIZE=base           # random wav2vec2 checkpoint: base (95M) or tiny
W2V2_FROZEN=4            # num_frozen_steps: the backbone trains for STEPS - this
PRETRAIN_YAML=hparams/pretrain/wav2vec2_base.yaml
PRETRAIN_STEPS=6
PRETRAIN_BATCH=8
# train_throughput.py as RESULTS.md gives it, fewer steps / files / loader batches
THROUGHPUT="--device cuda --precision fp16 --batch 100 --steps 20 --base --workers 8 --files 200 --loader_batches 4 --skip_loops --models xvector ecapa"
# train_throughput.py --adaptation_methods all on wav2vec2-base: 20 steps, ~2 s a method
# at its ~10 steps/s (RESULTS.md); with the start-up and five model builds <= ~60 s
ADAPT_THROUGHPUT="--device cuda --precision fp16 --batch 100 --steps 20 --base --workers 8 --files 200 --adaptation_methods all"
SWITCH_STEPS=40          # recipe eager vs fast (RESULTS.md: 200), train loss every 10
SWITCH_MODEL=ecapa       # the recipe eager vs fast: this model, then wav2vec2 if SWITCH_W2V2
SWITCH_BATCH=100         # (RESULTS.md: the recipes' own batch)
SWITCH_W2V2=1
PRECISION=fp16           # what results.json's test_precision must say
DEVICE=cuda:0
DDP_DEVICE=""            # under torchrun: none, so SpeechBrain picks cuda:LOCAL_RANK
                         # (an explicit cuda puts every rank on GPU 0)
BACKEND=nccl
CMD_TIMEOUT=240          # seconds any one command may take
BUDGET_S=420             # past this many seconds, the commands left are skipped (SKIP lines)
DEADLINE_S=465           # and a command still running at this many seconds is stopped
CPU=0
KEEP=""

PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TRAIN=$ROOT/recipes/VoxCeleb/train.py
EVAL=$ROOT/recipes/VoxCeleb/eval.py
PRETRAIN=$ROOT/recipes/VoxCeleb/pretrain.py
FAILED=0
START=0

usage() {
    sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --cpu) CPU=1 ;;
            --keep) KEEP=${2:?--keep needs a folder}; shift ;;
            -h|--help) usage; exit 0 ;;
            *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
        esac
        shift
    done
    if [ "$CPU" = 1 ]; then
        STEPS=4; VAL_INTERVAL=2; BATCH=8; WORKERS=0; W2V2_SIZE=tiny; W2V2_FROZEN=2
        PRETRAIN_YAML=hparams/pretrain/wav2vec2_tiny.yaml; PRETRAIN_STEPS=3; PRETRAIN_BATCH=4
        THROUGHPUT="--device cpu --precision fp32 --batch 4 --steps 2 --workers 0 --files 8 --loader_batches 1 --skip_loops --models xvector"
        ADAPT_THROUGHPUT="--device cpu --precision fp32 --batch 4 --steps 2 --workers 0 --files 8 --adaptation_methods all"
        SWITCH_STEPS=4; SWITCH_MODEL=xvector; SWITCH_BATCH=8; SWITCH_W2V2=0
        BUDGET_S=1200; DEADLINE_S=1500
        PRECISION=fp32; DEVICE=cpu; DDP_DEVICE=cpu; BACKEND=gloo
        export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    fi
}

# ---- helpers ------------------------------------------------------------------------------
over_budget() { [ $((SECONDS - START)) -ge "$BUDGET_S" ]; }
pass() { echo "PASS $1: $2"; }
skip() { echo "SKIP $1: $2"; }
fail() {  # fail CHECK DETAIL [LOG]: the tail of LOG indented below
    echo "FAIL $1: $2"
    FAILED=1
    if [ $# -ge 3 ] && [ -f "$3" ]; then
        tail -n 8 "$3" | sed 's/^/    /'
    fi
}

run() {  # run LOG CMD...: CMD (from the repository root) into LOG, bounded by CMD_TIMEOUT
    local log=$1
    shift
    local rc=0 limit=$((DEADLINE_S - (SECONDS - START)))
    [ "$limit" -le "$CMD_TIMEOUT" ] || limit=$CMD_TIMEOUT
    [ "$limit" -ge 1 ] || limit=1
    echo "+ $*" >>"$log"
    (cd "$ROOT" && timeout "$limit" "$@") >>"$log" 2>&1 || rc=$?
    if [ "$rc" = 124 ]; then
        echo "gpu_check: timed out after $limit s (CMD_TIMEOUT $CMD_TIMEOUT, DEADLINE_S $DEADLINE_S)" >>"$log"
    fi
    return "$rc"
}

py() {  # py CODE ARGS...: a Python snippet, lowres importable
    (cd "$ROOT" && PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c "$@")
}

results_summary() {  # results_summary RUN CHECKPOINT: "<test_precision> <detail>" from results.json
    py '
import sys
from lowres.io.run_folder import read_results
res = read_results(sys.argv[1], sys.argv[2])
if res is None:
    print("missing results.json")
    sys.exit(1)
eers = ", ".join("%s EER %.1f%%" % (name, 100 * t["eer"]) for name, t in res["test_sets"].items())
detail = "checkpoint %s, %s" % (res["checkpoint"]["which"], eers)
if "averaged" in res:
    detail += ", mean of %d (%s)" % (res["averaged"]["n"], res["averaged"]["by"])
print(res["test_precision"], detail)
' "$1" "$2"
}

train_losses() {  # train_losses RUN: "step:loss ..." of train_log.txt's train lines
    py '
import re, sys
from lowres.io.run_folder import train_log_path
pairs = re.findall(r"^step: (\d+).*?train loss: ([^,]+),", train_log_path(sys.argv[1]).read_text(),
                   re.M)  # the train lines (the validation lines start with epoch:)
print(" ".join(f"{s}:{l}" for s, l in pairs))
' "$1"
}

recipe_args() {  # the common train.py options: recipe_args OUT
    echo "--manifest_folder $WORK/manifests --output_folder $1 --max_steps $STEPS" \
         "--val_schedule steps --val_interval $VAL_INTERVAL --batch_size $BATCH" \
         "--ckpt_interval_minutes 0 --noprogressbar --test_sets original --num_workers $WORKERS"
}

check_results() {  # check_results CHECK RUN CHECKPOINT LOG: results.json and its precision
    local check=$1 run_dir=$2 ckpt=$3 log=$4 summary
    if ! summary=$(results_summary "$run_dir" "$ckpt" 2>>"$log"); then
        fail "$check" "no eval/$ckpt/results.json ($summary)" "$log"
        return 1
    fi
    if [ "${summary%% *}" != "$PRECISION" ]; then
        fail "$check" "test_precision ${summary%% *}, not $PRECISION" "$log"
        return 1
    fi
    echo "$summary"
}

# ---- setup --------------------------------------------------------------------------------
prepare_data() {
    local log=$WORK/logs/prepare.log
    if ! run "$log" "$PYTHON" -m prepare.synthetic --out "$WORK/corpus" --preset small --seed 0 ||
        ! run "$log" "$PYTHON" -m prepare.voxceleb --data_folder "$WORK/corpus" \
            --save_folder "$WORK/manifests" --jobs 4 --few_speakers_per_gender 4 \
            --val_trials_full 400 --val_trials_tiny 200 --val_fraction 0.1; then
        fail prepare "synthetic corpus or manifests" "$log"
        return 1
    fi
    if ! run "$log" "$PYTHON" -m lowres.tiny_wav2vec2 --out "$WORK/w2v2" --size "$W2V2_SIZE"; then
        fail prepare "wav2vec2 $W2V2_SIZE checkpoint" "$log"
        return 1
    fi
    pass prepare "corpus (small), manifests, random wav2vec2 $W2V2_SIZE"
}

# ---- checks -------------------------------------------------------------------------------
check_recipe() {  # 1. check_recipe MODEL: train.py end to end, fp16 train / valid / test
    local model=$1 check=recipe_$1 out=$WORK/runs/$1 log=$WORK/logs/recipe_$1.log extra="" s
    if over_budget; then skip "$check" "past the ${BUDGET_S} s budget"; return; fi
    if [ "$model" = wav2vec2 ]; then
        extra="--wav2vec2_source $WORK/w2v2 --num_frozen_steps $W2V2_FROZEN"
    fi
    # shellcheck disable=SC2046,SC2086  # the option lists split into words
    if ! run "$log" "$PYTHON" "$TRAIN" "hparams/${model}_tiny_few.yaml" $(recipe_args "$out") \
            --device "$DEVICE" --precision fp16 --test_precision fp16 $extra; then
        fail "$check" "train.py exited non-zero" "$log"
        return
    fi
    s=$(check_results "$check" "$out" best "$log") || return
    if ! grep -q "Using evaluation precision: \`--eval_precision=$PRECISION\`" "$log"; then
        fail "$check" "validation did not run in $PRECISION (valid_precision as_training)" "$log"
        return
    fi
    pass "$check" "train/valid/test $PRECISION on $DEVICE, $STEPS steps; ${s#* }"
}

check_averaged() {  # 2. average_checkpoints at training time, eval.py --checkpoint averaged
    local check=averaged out=$WORK/runs/averaged log=$WORK/logs/averaged.log s
    if over_budget; then skip "$check" "past the ${BUDGET_S} s budget"; return; fi
    # shellcheck disable=SC2046
    if ! run "$log" "$PYTHON" "$TRAIN" hparams/xvector_tiny_few.yaml $(recipe_args "$out") \
            --device "$DEVICE" --average_checkpoints 2 --evaluate_after_training false; then
        fail "$check" "train.py exited non-zero" "$log"
        return
    fi
    if ! run "$log" "$PYTHON" "$EVAL" hparams/xvector_tiny_few.yaml --output_folder "$out" \
            --checkpoint averaged --test_sets original --device "$DEVICE" \
            --test_precision fp16; then
        fail "$check" "eval.py --checkpoint averaged exited non-zero" "$log"
        return
    fi
    s=$(check_results "$check" "$out" averaged "$log") || return
    pass "$check" "eval.py --checkpoint averaged in $PRECISION; ${s#* }"
}

check_pretrain() {  # 3. pretrain.py, alone and under torchrun (1 process)
    local check=pretrain log=$WORK/logs/pretrain.log out
    if over_budget; then skip "$check" "past the ${BUDGET_S} s budget"; return; fi
    local -a ddp_device=()
    [ -z "$DDP_DEVICE" ] || ddp_device=("--device=$DDP_DEVICE")
    local args=("$PRETRAIN_YAML" "--train_audio=$WORK/corpus/voxceleb1/wav"
                "--valid_audio=$WORK/manifests/tiny_few/val.csv" "--batch_size=$PRETRAIN_BATCH"
                "--crop_seconds=2.0" "--max_steps=$PRETRAIN_STEPS" "--val_interval=$PRETRAIN_STEPS"
                "--log_interval=1" "--num_workers=2" "--noprogressbar" "--precision=fp16"
                "--ckpt_interval_minutes=0")
    out=$WORK/runs/pretrain
    if ! run "$log" "$PYTHON" "$PRETRAIN" "${args[@]}" "--output_folder=$out" \
            "--device=$DEVICE" || [ ! -f "$out/pretrained/config.json" ]; then
        fail "$check" "pretrain.py ($PRETRAIN_YAML) failed or wrote no pretrained/" "$log"
        return
    fi
    out=$WORK/runs/pretrain_ddp
    if ! run "$log" "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=1 \
            "$PRETRAIN" "${args[@]}" "--output_folder=$out" "${ddp_device[@]}" \
            "--distributed_backend=$BACKEND" || [ ! -f "$out/pretrained/config.json" ]; then
        fail "$check" "torchrun --nproc_per_node 1 pretrain.py ($BACKEND) failed" "$log"
        return
    fi
    pass "$check" "$(basename "$PRETRAIN_YAML") $PRETRAIN_STEPS steps, alone and under torchrun ($BACKEND, 1 process)"
}

check_ddp_2gpu() {  # 4. train.py under torchrun on 2 GPUs
    local check=ddp_2gpu out=$WORK/runs/ddp_2gpu log=$WORK/logs/ddp_2gpu.log n s
    if over_budget; then skip "$check" "past the ${BUDGET_S} s budget"; return; fi
    n=$(py 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
    if [ "$CPU" = 1 ] || [ "$n" -lt 2 ]; then
        skip "$check" "needs 2 GPUs ($n here)"
        return
    fi
    # shellcheck disable=SC2046
    if ! run "$log" "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=2 \
            "$TRAIN" hparams/xvector_tiny_few.yaml $(recipe_args "$out") \
            --distributed_backend nccl --precision fp16 --test_precision fp16; then
        fail "$check" "torchrun --nproc_per_node 2 train.py exited non-zero" "$log"
        return
    fi
    s=$(check_results "$check" "$out" best "$log") || return
    pass "$check" "x-vector on 2 GPUs (nccl), $STEPS steps; ${s#* }"
}

check_switches_throughput() {  # 5a. check_switches_throughput CHECK FLAGS...: train_throughput.py
    # with each FLAGS (a configuration of the switches) in turn; steps/s and peak GiB
    local check=$1 log=$WORK/logs/$1.log flags rows="" header="" n=0 one
    shift
    one=$WORK/logs/throughput_one.log
    for flags in "$@"; do
        if over_budget; then
            skip "$check" "past the ${BUDGET_S} s budget before: ${flags:-no switch}"
            break
        fi
        : >"$one"
        # shellcheck disable=SC2086  # the option lists split into words
        if ! run "$one" "$PYTHON" benchmarks/train_throughput.py $THROUGHPUT $flags; then
            cat "$one" >>"$log"
            fail "$check" "train_throughput.py ${flags:-without switches} failed" "$log"
            return
        fi
        cat "$one" >>"$log"
        n=$((n + 1))
        [ -n "$header" ] || header=$(grep -E '^model ' "$one" | head -n 1)
        rows+="  [${flags:-no switch}]"$'\n'
        rows+=$(grep -E '^(xvector|ecapa|wav2vec2)' "$one" | sed 's/^/    /')$'\n'
    done
    [ "$n" -gt 0 ] || return
    pass "$check" "$n of $# configurations ran; steps/s and peak GiB per model:"
    echo "    $header"
    printf '%s' "$rows"
}

check_adaptation_throughput() {  # 5c. train_throughput.py --adaptation_methods all:
    # per method, trainable / total parameters, steps/s, utt/s and peak GiB
    local check=adaptation_throughput log=$WORK/logs/adaptation_throughput.log
    if over_budget; then skip "$check" "past the ${BUDGET_S} s budget"; return; fi
    # shellcheck disable=SC2086  # the option list splits into words
    if ! run "$log" "$PYTHON" benchmarks/train_throughput.py $ADAPT_THROUGHPUT; then
        fail "$check" "train_throughput.py --adaptation_methods all failed" "$log"
        return
    fi
    pass "$check" "$(grep -m 1 '^adaptation methods' "$log"):"
    # the table: its header, then one row per method (warnings in the log left out)
    awk '/^method /{on=1; print; next} on && /^[a-z_]+ +[0-9][0-9,]* +[0-9][0-9,]* /' \
        "$log" | sed 's/^/    /'
}

check_switches_recipe() {  # 5b. the recipe eager vs fast, train loss every 10 steps
    local check=switches_recipe log=$WORK/logs/switches_recipe.log name rows="" ok=1
    local common="--manifest_folder $WORK/manifests --device $DEVICE --batch_size $SWITCH_BATCH --max_steps $SWITCH_STEPS --log_interval 10 --val_schedule steps --val_interval $((SWITCH_STEPS / 2)) --evaluate_after_training false --ckpt_interval_minutes 0 --noprogressbar --num_workers $WORKERS"
    local interval=10
    [ "$CPU" = 1 ] && interval=1 && common=${common/--log_interval 10/--log_interval 1}
    local m=$SWITCH_MODEL
    local -a runs=("${m}_eager|hparams/${m}_tiny_few.yaml|"
                   "${m}_eager2|hparams/${m}_tiny_few.yaml|"
                   "${m}_fast|hparams/${m}_tiny_few.yaml|--fused_optimizer=true --compile_embedder=true")
    if [ "$SWITCH_W2V2" = 1 ]; then
        runs+=("w2v2_eager|hparams/wav2vec2_tiny_few.yaml|--wav2vec2_source $WORK/w2v2"
               "w2v2_fast|hparams/wav2vec2_tiny_few.yaml|--wav2vec2_source $WORK/w2v2 --fused_optimizer=true --compile_embedder=true --gradient_checkpointing=false")
    fi
    local spec yaml flags
    for spec in "${runs[@]}"; do
        IFS='|' read -r name yaml flags <<<"$spec"
        if over_budget; then
            ok=0
            rows+="    $name: skipped, past the ${BUDGET_S} s budget"$'\n'
            continue
        fi
        # shellcheck disable=SC2086
        if ! run "$log" "$PYTHON" "$TRAIN" "$yaml" $common \
                --output_folder "$WORK/runs/switch_$name" $flags; then
            ok=0
            rows+="    $name: train.py exited non-zero"$'\n'
            continue
        fi
        rows+="    $name: $(train_losses "$WORK/runs/switch_$name")"$'\n'
    done
    if [ "$ok" = 1 ]; then
        pass "$check" "${#runs[@]} runs of $SWITCH_STEPS steps, step:train loss every $interval:"
    elif grep -q "train.py exited" <<<"$rows"; then
        fail "$check" "a run failed" "$log"
    else
        skip "$check" "runs left out, past the ${BUDGET_S} s budget:"
    fi
    printf '%s' "$rows"
}

# ---- main ---------------------------------------------------------------------------------
main() {
    parse_args "$@"
    if [ -n "$KEEP" ]; then
        WORK=$KEEP
        mkdir -p "$WORK"
    else
        WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
        trap 'rm -rf "$WORK"' EXIT
    fi
    mkdir -p "$WORK/logs" "$WORK/runs"
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    START=$SECONDS
    echo "gpu_check: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')," \
         "$(date -u '+%Y-%m-%d %H:%M UTC'), $(py 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")' 2>&1 | tail -n 1)," \
         "mode $([ "$CPU" = 1 ] && echo cpu || echo gpu), scratch $WORK"
    if prepare_data; then
        check_recipe xvector
        check_recipe ecapa
        check_recipe wav2vec2
        check_averaged
        check_pretrain
        check_ddp_2gpu
        check_switches_throughput switches_throughput "" "--fused" \
            "--fused --no_gradient_checkpointing" "--fused --no_gradient_checkpointing --compile"
        check_switches_recipe
        check_adaptation_throughput
        # the slowest to compile last, so that the budget leaves out only it
        check_switches_throughput switches_max_autotune \
            "--fused --no_gradient_checkpointing --compile --compile_mode max-autotune"
    fi
    echo "gpu_check: $((SECONDS - START)) s, $([ "$FAILED" = 0 ] && echo 'all passed' || echo 'FAILED')"
    return "$FAILED"
}

main "$@"
