#!/usr/bin/env bash
# BEST-RQ pre-trained Conformer + Transformer-decoder ASR.
# Default: the embedded corpus (synthesized on first run) on a CPU, every stage, ~30 min on 2 cores.
# LibriSpeech at full scale: see README ("Full-scale run").
set -e
set -u
set -o pipefail

pretrain_config=conf/pretrain_conformer_bestrq_embedded.yaml
finetune_config=conf/finetune_conformer_transformer_embedded.yaml
decode_config=conf/decode_asr_embedded.yaml

./ssl_asr.sh \
    --corpus embedded \
    --pretrain_set pretrain \
    --pretrain_sources "unlabeled train_clean" \
    --train_set train_clean \
    --valid_set dev_clean \
    --test_sets "test_clean test_other" \
    --nbpe 40 \
    --pretrain_config "${pretrain_config}" \
    --finetune_config "${finetune_config}" \
    --decode_config "${decode_config}" \
    "$@"
