#!/usr/bin/env bash
# BEST-RQ pre-trained Conformer + Transformer-decoder ASR at full scale, the seed's experiment as
# far as public data allows: pre-training on Libri-Light (small + medium + large), Common Voice
# English and LibriSpeech 960 h, plus your own corpora as Kaldi data directories (optional, e.g.
# podcasts, broadcasts); fine-tuning on the labeled part, LibriSpeech 960 h; 16 nodes x 8 GPUs
# (128 ranks) through Slurm. Configuration only: the stages are ssl_asr.sh.
# Needs LIBRISPEECH, LIBRILIGHT, COMMONVOICE and LIBRISPEECH_LM_TEXT (db.sh or the environment).
# Check the launches first: ./run.sh --dry_run true (prints sbatch/srun/torchrun, the batch
# arithmetic, the hours, passes and projected cost of each training, runs nothing). Any option
# can be overridden, e.g. --cmd_backend torchrun --hosts FILE.
#
# The seed's own configs (conf/pretrain_conformer_bestrq.yaml, conf/finetune_conformer_transformer.yaml)
# are sized for its 600k h and 100k h: on these ~61k h and 960 h their 400,000 and 100,000 updates
# would be ~56 and ~730 passes. The configs below keep the seed's models and optimizer and size
# the schedules to these hours (~11 and ~18 passes).
set -e
set -u
set -o pipefail

own_sets=""    # your own corpora for pre-training: Kaldi dirs data/<set> (wav.scp; no text needed), e.g. "podcasts broadcasts"
own_hours=0    # their hours, for the dry run before stage 2 counts them
args=()  # the other options go to ssl_asr.sh
while [ $# -gt 0 ]; do
    case "$1" in
        --own_sets) own_sets=$2; shift 2 ;;
        --own_hours) own_hours=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

train_set=train_960
valid_set=dev_other
test_sets="test_clean test_other"
cv_set=cv_validated   # Common Voice English, validated.tsv (~2.5k h; the hours depend on the release)
# Nominal hours of the public sets, for the passes printed before stage 2 has counted the data:
# Libri-Light small 577, medium 5,193, large 51,934 (Kahn et al. 2020); Common Voice English
# validated ~2,500; LibriSpeech 960 h 961 (281,241 utterances, mean 12.3 s).
pretrain_hours=$(( 577 + 5193 + 51934 + 2500 + 961 + own_hours ))

pretrain_config=conf/tuning/pretrain_conformer_bestrq_public.yaml
finetune_config=conf/tuning/finetune_conformer_transformer_public.yaml
decode_config=conf/decode_asr.yaml
lm_config=conf/train_lm.yaml

./ssl_asr.sh \
    --corpus librispeech \
    --pretrain_set pretrain \
    --pretrain_sources "ll_small ll_medium ll_large ${cv_set} ${train_set}${own_sets:+ ${own_sets}}" \
    --pretrain_data_hours "${pretrain_hours}" \
    --finetune_data_hours 961 \
    --finetune_mean_utt_seconds 12.3 \
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
    "${args[@]}"
