#!/usr/bin/env bash
# BEST-RQ pre-trained Conformer + Transformer-decoder ASR at full scale: pre-training on
# Libri-Light + LibriSpeech 960 h, fine-tuning on LibriSpeech 960 h, 16 nodes x 8 GPUs (128 ranks)
# through Slurm. Configuration only: the stages are ssl_asr.sh.
# Needs LIBRISPEECH, LIBRILIGHT and LIBRISPEECH_LM_TEXT (db.sh or the environment).
# Check the launches first: ./run.sh --dry_run true (prints sbatch/srun/torchrun and the batch
# arithmetic, runs nothing). Any option can be overridden, e.g. --cmd_backend torchrun --hosts FILE.
set -e
set -u
set -o pipefail

train_set=train_960
valid_set=dev_other
test_sets="test_clean test_other"

pretrain_config=conf/pretrain_conformer_bestrq.yaml
finetune_config=conf/finetune_conformer_transformer.yaml
decode_config=conf/decode_asr.yaml
lm_config=conf/train_lm.yaml

./ssl_asr.sh \
    --corpus librispeech \
    --pretrain_set pretrain \
    --pretrain_sources "ll_small ll_medium ll_large ${train_set}" \
    --ablation_set ll_10min \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --nbpe 5000 \
    --pretrain_config "${pretrain_config}" \
    --finetune_config "${finetune_config}" \
    --decode_config "${decode_config}" \
    --lm_config "${lm_config}" \
    --ngpu 8 \
    --num_nodes 16 \
    --cmd_backend slurm \
    --chunk_size 1000 \
    "$@"
