#!/usr/bin/env bash
# The CUDA path in one command, for a machine with GPUs: DDP over NCCL (one process per GPU), bf16 autocast and
# gradient accumulation, for the teacher and both students, on the generated demo corpus.
#
#     benchmarks/gpu_check.sh [WORK_DIR]          # default: ./gpu-check
#
# Needs a Python whose torch has CUDA and this package installed in it (`pip install -e .`; the pinned CPU torch
# of the project's own machines cannot see a GPU). Prints each stage's val micro-F1, processes and seconds, and
# fails on the first stage that fails. CPU runs of the same code are tested in tests/test_distributed.py.
set -euo pipefail

work=${1:-gpu-check}
python=${PYTHON:-python3}
gpus=$("$python" -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -lt 1 ]; then
    echo "no CUDA device visible to $python (torch $("$python" -c 'import torch; print(torch.__version__)'))" >&2
    exit 1
fi
echo "$gpus GPU(s): $(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | xargs)"
mkdir -p "$work"
cd "$work"

run() { "$python" -m mobclf "$@"; }
ddp() { "$python" -m torch.distributed.run --nproc_per_node "$gpus" -m mobclf "$@"; }
cuda=(--device cuda --precision bf16 --accumulate 2)

"$python" -c "from mobclf.data.demo_corpus import generate_demo_corpus; generate_demo_corpus('news.jsonl', n_items=20000, seed=42)"
run data prepare news.jsonl --out data --force
ddp train-teacher --data data --out teacher --layers 4 --hidden 256 --heads 4 --max-length 40 --epochs 3 \
    --batch-size 256 --lr 1e-3 "${cuda[@]}" --force
ddp distill textcnn --teacher teacher --data data --out textcnn --loss soft_kd=1 --loss hard_bce=1 \
    --loss hint_mse=1 --loss attention_transfer=1 --intermediate-epochs 1 --epochs 3 --batch-size 256 \
    "${cuda[@]}" --force
ddp distill tinybert --teacher teacher --data data --out tinybert --layers 2 --hidden 128 --heads 4 \
    --intermediate 256 --loss soft_kd=1 --loss embedding_mse=1 --loss hidden_mse=1 --loss attention_mse=1 \
    --intermediate-epochs 1 --epochs 3 --batch-size 256 "${cuda[@]}" --force

"$python" - <<'EOF'
import json
for name in ("teacher", "textcnn", "tinybert"):
    manifest = json.load(open(f"{name}/manifest.json"))
    training = manifest["training"]
    print(f"{name}: val micro-F1 {manifest['metrics']['val']['micro_f1']:.4f}, {training['processes']} processes, "
          f"{training['seconds']:.0f} s")
EOF
