#!/usr/bin/env bash
# The effect of waveform augmentation on the embedded corpus (issue 14): the default fine-tuning
# config against its augmented variant, same pre-trained encoder, data and schedule, several
# seeds a side, decoded without the LM on dev and test; prints the table (local/augment_report.py).
# Run after ./run.sh (stages 1-5 done). Seed 0 of the default arm is stage 5's own run (the
# config's seed): only decoded. About 17 min per fine-tuning on 2 cores.
#
#   local/augment_effect.sh [--seeds "0 1 2"] [--aug_config conf/tuning/...aug.yaml] [--expdir exp]
#
# At equal time instead of equal updates (an augmented update costs ~1.3x here), e.g.:
#   local/augment_effect.sh --aug_args "--max_epoch 20 --scheduler_conf total_steps=2000" \
#       --aug_tag finetune_conformer_transformer_embedded_aug_2000u
set -e -u -o pipefail
# <options>
seeds="0 1 2"           # fine-tuning seeds of each arm
base_config=conf/finetune_conformer_transformer_embedded.yaml   # without augmentation (stage 5's)
aug_config=conf/tuning/finetune_conformer_transformer_embedded_aug.yaml  # with it
aug_args=""             # extra fine-tuning arguments of the augmented arm (e.g. fewer updates, for equal time)
aug_tag=""              # experiment name of the augmented arm (default: the config's name; set it with --aug_args)
decode_config=conf/decode_asr_embedded.yaml  # decoding of both, without the LM
sets="dev_clean test_clean test_other"  # decoded and scored; the first one selects
expdir=exp              # the run's experiments (stage 4's encoder, stage 5's run)
# </options>
. ./utils/parse_options.sh
[ -z "${aug_tag}" ] && aug_tag=$(basename "${aug_config}" .yaml)
if [ -n "${aug_args}" ] && [ "${aug_tag}" = "$(basename "${aug_config}" .yaml)" ]; then
    echo "$0: --aug_args changes the augmented arm: give it its own --aug_tag" >&2; exit 1
fi

base_seed=$(python -c 'import sys, yaml; print((yaml.safe_load(open(sys.argv[1])) or {}).get("seed", 0))' "${base_config}")
for seed in ${seeds}; do
    for arm in base aug; do
        config=${base_config}; tag=$(basename "${base_config}" .yaml)
        extra=""
        [ "${arm}" = aug ] && config=${aug_config} && tag=${aug_tag} && extra=" ${aug_args}"
        args=() first=6  # stage 5's own run: decoded only
        if [ "${arm}" = aug ] || [ "${seed}" != "${base_seed}" ]; then
            tag=${tag}_seed${seed} first=5
            args=(--finetune_args "--seed ${seed}${extra}")
        fi
        ./run.sh --stage "${first}" --stop_stage 7 --use_lm false --expdir "${expdir}" --finetune_config "${config}" \
            --finetune_tag "${tag}" --decode_config "${decode_config}" --test_sets "${sets}" "${args[@]}"
    done
done
python local/augment_report.py --expdir "${expdir}" --base "$(basename "${base_config}" .yaml)" \
    --aug "${aug_tag}" --decode "$(basename "${decode_config}" .yaml)" --sets "${sets}" --seeds "${seeds}"
