#!/usr/bin/env bash
# Staged recipe: BEST-RQ self-supervised pre-training of a Conformer encoder, then
# CTC/attention fine-tuning with a Transformer decoder (ESPnet tasks + espnet_ext plugins).
#
#   Stage 1: data preparation (Kaldi-style dirs; embedded corpus synthesized if selected)
#   Stage 2: the training data as shards: --feats_type raw, the audio (FLAC, kaldiio archives,
#            wav.scp; the logmel frontend computes the features on the training device), or
#            fbank, the features (80-dim log-Mel, 25 ms / 10 ms, per-utterance normalized; feats.scp)
#   Stage 3: tokenizer (sentencepiece unigram) and ESPnet token list; with --use_lm true, the
#            token-level language model (ESPnet LM task) on the LM text + training transcripts
#   Stage 4: self-supervised pre-training (ESPnet SSL task, best_rq loss, ssl_conformer)
#   Stage 5: fine-tuning (ESPnet ASR task, encoder initialized from stage 4)
#   Stage 6: decoding (espnet2.bin.asr_inference, joint CTC/attention beam search, + the LM)
#   Stage 7: scoring (WER/CER with jiwer) -> <expdir>/RESULTS.md, <expdir>/results.json
#   Stage 8: packing (espnet2.bin.pack zip; the LM too with --use_lm true)
#   Stage 9 (optional, not run by default): ablation: low-resource fine-tuning from scratch vs
#            from the pre-trained encoder, several seeds, decoded without the LM (the
#            encoder's effect alone) -> <expdir>/RESULTS.ablation.md
#   Stage 10 (optional, not run by default): Hugging Face model repository <asr_exp>/hf_repo
#            (packed files, RESULTS.md, README.md model card); uploaded with --hf_repo ORG/NAME;
#            with --dry_run true, lists what would be uploaded
#   Stage 11 (optional, not run by default): equal-time comparison: fine-tuning from the
#            stage-4 encoder vs ESPnet's stock Conformer from scratch (--compare_config) for
#            the same measured training time, several seeds, decoded without the LM
#            -> <expdir>/RESULTS.compare.md, results.json (asr_compare_{pretrained,stock_scratch}_seed<N>)
#
# Generic: the corpus's run.sh passes the sets, vocabulary size, configs and geometry (./run.sh:
# the embedded corpus on a CPU; egs2/librispeech_ssl/asr1/run.sh: LibriSpeech on 16 x 8 GPUs).
# ./run.sh --help lists every option with its value. Each stage has one guard below; all options,
# configs and the training launches of the stages to run are checked first, before any work.
set -e
set -u
set -o pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
SECONDS=0

# <options>
stage=1                 # first stage to run
stop_stage=8            # last stage to run
nj=2                    # parallel jobs for data preparation, features and decoding
ngpu=0                  # GPUs per node (0: CPU)
num_nodes=1             # number of nodes
cpu_procs=1             # with --ngpu 0: CPU (gloo) DDP processes per node for training (1: one process)
cmd_backend=""          # local | slurm | torchrun (empty: cmd.sh's choice); see cmd.sh
hosts=""                # torchrun backend: the nodes, comma-separated or a file with one per line
master_port=""          # rendezvous port of multi-node training (empty: slurm picks a free one in the job; torchrun backend: 29500)
slurm_opts=""           # slurm backend: more sbatch/srun options, --name=value form (e.g. "--partition=gpu --account=x")
slurm_time=2-00:00:00   # slurm backend: wall time of each training job; a longer training requeues itself and resumes
slurm_mem=""            # slurm backend: --mem per training node (empty: from the ranks and the config's num_workers)
slurm_exclusive=false   # slurm backend: whole nodes (--exclusive) instead of --mem
slurm_wait=true         # slurm backend: wait for each training job (sbatch --wait); false: submit it, print how to follow it and go on, and stop
checkpoint_write_seconds=120  # slurm backend: a step checkpoint's write time: sizes --signal=B:USR1@<lead> and the NCCL timeouts
dry_run=false           # true: print the training launches of stages 3-5 (commands, batch arithmetic), the stage-2 data plan, the decoding commands and stage 10's upload, and exit
plan_hours=""           # --dry_run true: hours for the stage-2 data plan (default: --pretrain_data_hours)
feats_type=raw          # stage 2 writes: raw (the audio as FLAC shards, wav.scp; the model's logmel frontend makes the features) | fbank (the features, feats.scp)
chunk_size=200          # stage 2: utterances per feature shard (the resume unit; 1000-2000 at full scale)
accept_global_batch=false  # launch even when the geometry or overrides change a config's global_batch_utts
pretrain_data_hours=""  # hours of pre-training data until stage 2 has written dump/<set>/speech_shape or feats_shape (then counted)
finetune_data_hours=""  # same, for fine-tuning
pretrain_mean_utt_seconds=15  # mean utterance length assumed with --pretrain_data_hours
finetune_mean_utt_seconds=15  # same, for fine-tuning (LibriSpeech 960 h: 12.3)
pretrain_max_passes=none  # launches stop when pre-training passes over its data more often (none: no limit)
finetune_max_passes=20  # same, for fine-tuning (stage 5)
accept_passes=false     # launch even past max_passes
corpus=""               # required: embedded | librispeech: where LibriSpeech-layout subsets come from
datadir=data            # Kaldi-style data directories
dumpdir=dump            # features
expdir=exp              # models, decoding results, RESULTS.md, results.json
pretrain_set=pretrain   # unlabeled pre-training set (built by combining pretrain_sources)
pretrain_sources=""     # required: sets combined into pretrain_set (space-separated); "set:weight ..." mixes them by weight
source_temperature=""   # mix pretrain_sources with shares ~ hours^(1/T) (instead of weights; empty: no mixing)
train_set=""            # required: labeled fine-tuning set
valid_set=""            # required: validation set
test_sets=""            # required: evaluation sets (space-separated)
embedded_seed=0         # --corpus embedded: seed of the synthesized corpus
embedded_scale=1.0      # --corpus embedded: size multiplier of the synthesized corpus
noise_set=musan_noise   # stage 1: the noise list (MUSAN, db.sh) that fine-tuning configs with noise_apply_prob > 0 read
rir_set=rirs            # stage 1: the room-response list (RIRS_NOISES, db.sh) for configs with rir_apply_prob > 0
max_utt_seconds=35      # longer labeled utterances are rejected
segment_seconds=30      # long unlabeled recordings are cut into segments of at most this
nbpe=""                 # required: sentencepiece vocabulary size
pretrain_config=""      # required: SSL training config (stage 4)
finetune_config=""      # required: ASR training config (stage 5)
decode_config=""        # required: decoding config (stage 6)
pretrain_tag=""         # name of the pre-training experiment (default: from the config)
finetune_tag=""         # name of the fine-tuning experiment (default: from the config)
pretrain_args=""        # extra arguments for pre-training (e.g. "--max_epoch 2")
finetune_args=""        # extra arguments for fine-tuning
init_from_pretrained=true  # false: fine-tune from scratch with the same config
inference_batch_size=16 # utterances per decoding batch
inference_ngpu=0        # stage 6: decode on N GPUs, one job per GPU (asr_inference --ngpu 1) through decode_cmd (0: --nj CPU jobs)
use_lm=true             # stage 3 trains a token-level LM; stages 6 and 8 decode and pack with it
lm_config=""            # LM training config (stage 3; required with --use_lm true)
lm_text=""              # text-only LM corpus, a sentence per line, .gz ok (default: the corpus's librispeech-lm-norm.txt.gz; LibriSpeech: LIBRISPEECH_LM_TEXT in db.sh)
lm_tag=""               # name of the LM experiment (default: from the config)
lm_args=""              # extra arguments for LM training
inference_model=valid.acc.ave.pth  # checkpoint used for decoding and packing
ablation_minutes=10     # stage 9: minutes of labeled speech in the low-resource subset of train_set
ablation_set=""         # stage 9: a named low-resource set instead (e.g. ll_10min, ll_1h, ll_10h: Libri-Light's)
ablation_seeds="1 2 3"  # stage 9: fine-tuning seeds, each run from scratch and from the pre-trained encoder
ablation_config=""      # stage 9: fine-tuning config (required for stage 9)
ablation_decode_config=""  # stage 9: decoding config, without the LM (required for stage 9)
compare_config=""       # stage 11: the scratch arm's config: ESPnet's stock encoder (required for stage 11)
compare_decode_config=""  # stage 11: decoding config of both arms, used without the LM (required for stage 11)
compare_seeds="0 1 2"   # stage 11: seeds of each arm (the pretrained arm's fine-tuning seeds; the config's own, 0, reuses stage 5)
compare_calib_epochs=2  # stage 11: epochs of the scratch arm's calibration run (its pace sets the epochs)
hf_repo=""              # stage 10: upload the model repository to this Hugging Face Hub ORG/NAME (empty: build it only)
hf_license=cc-by-4.0    # stage 10: the model card's licence
hf_language=en          # stage 10: the model card's language
hf_datasets=""          # stage 10: Hub data set ids in the card (default: openslr/librispeech_asr for --corpus librispeech)
# </options>

help_message="Usage: $0 [options]   (see the stage list at the top of this script)"
invocation=$(printf ' %q' "$0" "$@")  # printed with --slurm_wait false: how to go on
. ./utils/parse_options.sh
if [ $# -gt 0 ]; then
    log "Error: unexpected positional arguments: $*"; exit 1
fi

. ./path.sh
. ./cmd.sh
. ./db.sh

# ---- Checks: every option and config, before any work starts ----
in_stages() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]; }  # is stage $1 to run?
required=(corpus pretrain_sources train_set valid_set test_sets nbpe pretrain_config finetune_config decode_config)
"${use_lm}" && required+=(lm_config)
in_stages 9 && required+=(ablation_config ablation_decode_config)
in_stages 11 && required+=(compare_config compare_decode_config)
for s in 9 11; do
    if in_stages "${s}" && [ "${cmd_backend}" = slurm ] && ! "${slurm_wait}"; then
        log "Error: stage ${s} runs trainings one after another: it needs --slurm_wait true"; exit 1
    fi
done
for opt in "${required[@]}"; do
    [ -n "${!opt}" ] || { log "Error: --${opt} is required (the corpus's run.sh sets it)"; exit 1; }
done
case "${feats_type}" in
    raw) speech_scp=wav.scp speech_shape=speech_shape ;;     # FLAC shards; ESPnet's speech_shape is in samples
    fbank) speech_scp=feats.scp speech_shape=feats_shape ;;  # feature shards; feats_shape: frames,80
    *) log "Error: --feats_type must be raw or fbank, got '${feats_type}'"; exit 1 ;;
esac
case "${corpus}" in
    embedded)
        librispeech_root=${EMBEDDED}
        MUSAN=${MUSAN:-${EMBEDDED}/musan} RIRS_NOISES=${RIRS_NOISES:-${EMBEDDED}/RIRS_NOISES}  # its own (stage 1)
        [ -z "${lm_text}" ] && lm_text=${EMBEDDED}/librispeech-lm-norm.txt.gz ;;  # written in stage 1
    librispeech)
        librispeech_root=${LIBRISPEECH}
        if [ -z "${librispeech_root}" ]; then
            log "Error: --corpus librispeech needs LIBRISPEECH set (db.sh or the environment)"; exit 1
        fi
        [ -z "${lm_text}" ] && lm_text=${LIBRISPEECH_LM_TEXT}
        if "${use_lm}" && [ ! -f "${lm_text}" ]; then
            log "Error: --use_lm true needs the LM text: set LIBRISPEECH_LM_TEXT (db.sh) to librispeech-lm-norm.txt.gz"
            log "       (https://www.openslr.org/11), or pass --lm_text FILE, or --use_lm false (no LM)"; exit 1
        fi ;;
    *) log "Error: --corpus must be embedded or librispeech, got '${corpus}'"; exit 1 ;;
esac
lm_check=()
if "${use_lm}"; then
    lm_check=(--lm_config "${lm_config}")
    [ -f "${lm_config}" ] || { log "Error: config not found: ${lm_config}"; exit 1; }
fi
for f in "${pretrain_config}" "${finetune_config}" "${decode_config}"; do
    [ -f "${f}" ] || { log "Error: config not found: ${f}"; exit 1; }
done
if in_stages 9; then
    for f in "${ablation_config}" "${ablation_decode_config}"; do
        [ -f "${f}" ] || { log "Error: config not found: ${f}"; exit 1; }
    done
    python -m espnet_ext.bin.check_config --pretrain_config "${pretrain_config}" \
        --finetune_config "${ablation_config}" --decode_config "${ablation_decode_config}" --feats_type "${feats_type}"
fi
if in_stages 11; then
    for f in "${compare_config}" "${compare_decode_config}"; do
        [ -f "${f}" ] || { log "Error: config not found: ${f}"; exit 1; }
    done
    python -m espnet_ext.bin.check_config --pretrain_config "${pretrain_config}" \
        --finetune_config "${compare_config}" --decode_config "${compare_decode_config}" --init_from_pretrained false \
        --feats_type "${feats_type}"
    [ -n "${compare_seeds}" ] || { log "Error: --compare_seeds is empty"; exit 1; }
fi
python -m espnet_ext.bin.check_config --pretrain_config "${pretrain_config}" \
    --finetune_config "${finetune_config}" --decode_config "${decode_config}" \
    --init_from_pretrained "${init_from_pretrained}" "${lm_check[@]}" --feats_type "${feats_type}"

# The machine: the NVIDIA driver runs the torch build (--ngpu > 0 only; a dry run reports it),
# espeak-ng synthesizes the embedded corpus (only stage 1 with --corpus embedded needs it).
if [ "${ngpu}" -gt 0 ] && { in_stages 3 || in_stages 4 || in_stages 5 || in_stages 9; }; then
    python -m espnet_ext.bin.check_cuda --ngpu "${ngpu}" --cmd_backend "${cmd_backend}" --dry_run "${dry_run}"
fi
if [ "${corpus}" = embedded ] && in_stages 1 && ! command -v espeak-ng > /dev/null; then
    msg="stage 1 synthesizes the embedded corpus with espeak-ng, which is not on PATH. Install it: sudo apt-get install -y espeak-ng"
    if "${dry_run}"; then log "Note: ${msg}"; else log "Error: ${msg}"; exit 1; fi
fi

# ---- Pre-training sources: "a b" (every utterance once per pass) or "a:w b:w" (mixed by weight) ----
pretrain_source_sets=""; source_weights=""; n_weighted=0; n_sources=0
for src in ${pretrain_sources}; do
    n_sources=$((n_sources + 1))
    pretrain_source_sets+="${pretrain_source_sets:+ }${src%%:*}"
    case "${src}" in *:*) n_weighted=$((n_weighted + 1)); source_weights+="${source_weights:+ }${src}" ;; esac
done
if [ "${n_weighted}" -ne 0 ] && [ "${n_weighted}" -ne "${n_sources}" ]; then
    log "Error: --pretrain_sources: give a weight to every source or to none: '${pretrain_sources}'"; exit 1
fi
if [ -n "${source_weights}" ] && [ -n "${source_temperature}" ]; then
    log "Error: --pretrain_sources with weights and --source_temperature: give one of them"; exit 1
fi
mix=""  # non-empty: mixed by weight (stage 1 records utt2source, stage 2 cuts shards per source)
[ -n "${source_weights}${source_temperature}" ] && mix=true
pretrain_sources=${pretrain_source_sets}

# ---- Names of everything the stages write ----
[ -z "${pretrain_tag}" ] && pretrain_tag=$(basename "${pretrain_config}" .yaml)
[ -z "${finetune_tag}" ] && finetune_tag=$(basename "${finetune_config}" .yaml)
pretrain_exp=${expdir}/ssl_${pretrain_tag}
init_ckpt=${pretrain_exp}/valid.loss.best.pth  # the pre-trained encoder that stages 5 and 9 load
encoder_init=(--init_param "${init_ckpt}:encoder:encoder")  # fine-tuning from it
if "${init_from_pretrained}"; then
    asr_exp=${expdir}/asr_${finetune_tag}_pretrained
    init_param=("${encoder_init[@]}")  # stage 5's encoder initialization
else
    asr_exp=${expdir}/asr_${finetune_tag}_scratch
    init_param=()
fi
token_dir=${datadir}/token_list/bpe_unigram${nbpe}
bpemodel=${token_dir}/bpe.model
token_list=${token_dir}/tokens.txt
[ -z "${lm_tag}" ] && lm_tag=$(basename "${lm_config}" .yaml)_bpe${nbpe}
lm_exp=${expdir}/lm_${lm_tag}
lm_data=${datadir}/lm_train_bpe${nbpe}  # LM text and token counts (stage 3)
lm_model=valid.loss.best.pth            # the LM checkpoint that decoding and packing use

# decode_tag <decode config> <with_lm>: the decoding folder's name, as ESPnet's asr.sh builds inference_tag.
decode_tag() {
    if "$2"; then
        echo "$(basename "$1" .yaml)_lm_$(basename "${lm_exp}")_${lm_model%.pth}"
    else
        basename "$1" .yaml
    fi
}

# decode_command <asr_exp> <model file> <decode config> <dec_dir>: the decoding job array of
# one set, in dec_cmd (lm_opts set by the caller): --nj CPU jobs, or with --inference_ngpu N,
# N jobs of one GPU each (asr_inference --ngpu 1; decode_cmd --gpu 1: an sbatch array with
# the slurm backend, CUDA_VISIBLE_DEVICES per job locally). dec_jobs: the number of jobs.
decode_command() {
    local exp=$1 model=$2 config=$3 dec_dir=$4 threads gpu_opts=() ngpu_opt=0
    dec_jobs=${nj}
    threads=$(( $(nproc) / nj )); [ "${threads}" -ge 1 ] || threads=1
    if [ "${inference_ngpu}" -gt 0 ]; then
        dec_jobs=${inference_ngpu} ngpu_opt=1 threads=2
        gpu_opts=(--gpu 1 --num_threads "${threads}")
    fi
    # shellcheck disable=SC2206
    dec_cmd=(${decode_cmd} "${gpu_opts[@]}" JOB=1:${dec_jobs} "${dec_dir}/log/decode.JOB.log"
        env OMP_NUM_THREADS=${threads} python -m espnet2.bin.asr_inference
            --ngpu ${ngpu_opt}
            --batch_size "${inference_batch_size}"
            --config "${config}"
            --data_path_and_name_and_type "${dumpdir}/${dset}/${speech_scp},speech,kaldi_ark"
            --key_file "${dec_dir}/split${dec_jobs}/keys.JOB"
            --asr_train_config "${exp}/config.yaml"
            --asr_model_file "${exp}/${model}"
            "${lm_opts[@]}"
            --output_dir "${dec_dir}/output.JOB")
}

# decode_sets <asr_exp> <model file> <decode config> <with_lm: true|false> <sets...>: stage 6
# for one model, in --nj jobs (--inference_ngpu N: N GPU jobs).
decode_sets() {
    local exp=$1 model=$2 config=$3 with_lm=$4; shift 4
    local dset dec_dir stamp lm_opts=()
    stamp="$(readlink -f "${exp}/${model}") $(stat -L -c %Y "${exp}/${model}") $(md5sum < "${config}" | cut -c1-8)"
    if "${with_lm}"; then
        [ -e "${lm_exp}/${lm_model}" ] || { log "Error: no LM at ${lm_exp}/${lm_model}: run stage 3, or --use_lm false"; exit 1; }
        lm_opts=(--lm_train_config "${lm_exp}/config.yaml" --lm_file "${lm_exp}/${lm_model}")
        stamp="${stamp} $(readlink -f "${lm_exp}/${lm_model}") $(stat -L -c %Y "${lm_exp}/${lm_model}")"
    fi
    for dset in "$@"; do
        dec_dir=${exp}/$(decode_tag "${config}" "${with_lm}")/${dset}
        if [ -f "${dec_dir}/.done" ] && [ "$(cat "${dec_dir}/.done")" = "${stamp}" ]; then
            log "  ${dset}: already decoded with this model (${dec_dir})"; continue
        fi
        rm -rf "${dec_dir}"
        mkdir -p "${dec_dir}/log"
        decode_command "${exp}" "${model}" "${config}" "${dec_dir}"
        python -m espnet_ext.bin.split_scp "${dumpdir}/${dset}/${speech_scp}" "${dec_jobs}" "${dec_dir}/split${dec_jobs}/keys"
        "${dec_cmd[@]}"
        for i in $(seq "${dec_jobs}"); do cat "${dec_dir}/output.${i}/1best_recog/text"; done \
            | LC_ALL=C sort > "${dec_dir}/text"
        echo "${stamp}" > "${dec_dir}/.done"
        log "  ${dset}: $(wc -l < "${dec_dir}/text") utterances decoded in ${dec_dir}"
    done
}

# ---- Training launches ----
# Training (stages 3 LM, 4 and 5) goes through espnet_ext.bin.launch ("${launch_cmd[@]}", cmd.sh):
# one process per GPU on every node (--cpu_procs gloo processes with --ngpu 0), --ngpu and
# the distributed options added per process. The launches of the stages to run (geometry,
# batch arithmetic, global_batch_utts) are checked below, before stage 1; --dry_run true
# prints them and exits.
launch_args=(--ngpu "${ngpu}" --num_nodes "${num_nodes}" --cpu_procs "${cpu_procs}"
    ${master_port:+--master_port "${master_port}"} --accept_global_batch "${accept_global_batch}"
    ${hosts:+--hosts "${hosts}"})
# submitted_stop <stage>: with --slurm_wait false the stage's training was only submitted:
# stop here (the next stage needs the finished model) and say how to go on.
submitted_stop() {
    if [ "${cmd_backend}" = slurm ] && ! "${slurm_wait}"; then
        log "Stage $1: training submitted (--slurm_wait false); stopping before stage $(( $1 + 1 )). When the job has finished:"
        log "  ${invocation# } --stage $(( $1 + 1 ))"
        exit 0
    fi
}
launch_mode=(--dry_run true)
# data_opts <hours> <mean s> <shape file> <max passes>: the data size (hours until the shape file exists) and the passes limit
data_opts() {
    [ -n "$1" ] && [ ! -f "$3" ] && echo "--data_hours $1 --mean_utt_seconds $2"
    echo "--max_passes $4 --accept_passes ${accept_passes}"
}
pretrain_launch() {  # stage 4's training
    # shellcheck disable=SC2086
    "${launch_cmd[@]}" "${launch_args[@]}" "${launch_mode[@]}" --log "${pretrain_exp}/train.log" \
        $(data_opts "${pretrain_data_hours}" "${pretrain_mean_utt_seconds}" "${dumpdir}/${pretrain_set}/${speech_shape}" "${pretrain_max_passes}") -- \
        python -m espnet_ext.bin.ssl_train \
            --config "${pretrain_config}" \
            --token_list "${pretrain_exp}/ssl_tokens.txt" \
            --train_data_path_and_name_and_type "${dumpdir}/${pretrain_set}/${speech_scp},speech,kaldi_ark" \
            --train_shape_file "${dumpdir}/${pretrain_set}/${speech_shape}" \
            --valid_data_path_and_name_and_type "${dumpdir}/${valid_set}/${speech_scp},speech,kaldi_ark" \
            --valid_shape_file "${dumpdir}/${valid_set}/${speech_shape}" \
            --resume true \
            --output_dir "${pretrain_exp}" \
            ${source_weights:+--shard_source_weights "${source_weights}"} \
            ${source_temperature:+--shard_source_temperature "${source_temperature}"} \
            ${pretrain_args}
}
# finetune_launch <exp> <train set> <config> [args...]: a fine-tuning (stages 5 and 9); the
# arguments (encoder initialization, seed) come before --finetune_args.
finetune_launch() {
    local exp=$1 train=$2 config=$3 aug; shift 3
    # the noise / RIR lists the config's noise_apply_prob / rir_apply_prob ask for (training only)
    aug=$(python -m espnet_ext.bin.prepare_noise --datadir "${datadir}" --noise_set "${noise_set}" \
        --rir_set "${rir_set}" --train_opts "${config}" $([ "${launch_mode[1]}" = false ] && echo --check)) || return 1
    # shellcheck disable=SC2086
    "${launch_cmd[@]}" "${launch_args[@]}" "${launch_mode[@]}" --log "${exp}/train.log" \
        $(data_opts "${finetune_data_hours}" "${finetune_mean_utt_seconds}" "${dumpdir}/${train}/${speech_shape}" "${finetune_max_passes}") -- \
        python -m espnet_ext.bin.asr_train \
            --config "${config}" \
            --token_type bpe \
            --bpemodel "${bpemodel}" \
            --token_list "${token_list}" \
            --train_data_path_and_name_and_type "${dumpdir}/${train}/${speech_scp},speech,kaldi_ark" \
            --train_data_path_and_name_and_type "${dumpdir}/${train}/text,text,text" \
            --train_shape_file "${dumpdir}/${train}/${speech_shape}" \
            --valid_data_path_and_name_and_type "${dumpdir}/${valid_set}/${speech_scp},speech,kaldi_ark" \
            --valid_data_path_and_name_and_type "${dumpdir}/${valid_set}/text,text,text" \
            --valid_shape_file "${dumpdir}/${valid_set}/${speech_shape}" \
            --resume true \
            --output_dir "${exp}" \
            ${aug} "$@" ${finetune_args}
}
asr_launch() {  # stage 5's training
    finetune_launch "${asr_exp}" "${train_set}" "${finetune_config}" "${init_param[@]}"
}
lm_launch() {  # stage 3's LM training
    # shellcheck disable=SC2086
    "${launch_cmd[@]}" "${launch_args[@]}" "${launch_mode[@]}" --log "${lm_exp}/train.log" -- \
        python -m espnet_ext.bin.lm_train \
            --config "${lm_config}" \
            --token_type bpe \
            --bpemodel "${bpemodel}" \
            --token_list "${token_list}" \
            --train_data_path_and_name_and_type "${lm_data}/text,text,text" \
            --train_shape_file "${lm_data}/text_shape.bpe" \
            --valid_data_path_and_name_and_type "${datadir}/${valid_set}/text,text,text" \
            --valid_shape_file "${lm_data}/valid_shape.bpe" \
            --resume true \
            --output_dir "${lm_exp}" \
            ${lm_args}
}
# The launches of the stages to run, as "<stage>|<launch function>|<what>|<name in errors>".
launches=()
"${use_lm}" && in_stages 3 && launches+=("3|lm_launch|language model on ${lm_data}/text -> ${lm_exp}|LM ")
in_stages 4 && launches+=("4|pretrain_launch|self-supervised pre-training on ${pretrain_set} -> ${pretrain_exp}|")
in_stages 5 && launches+=("5|asr_launch|fine-tuning on ${train_set} -> ${asr_exp}|")
"${dry_run}" && log "Dry run: the training launches of stages 3 (LM), 4 and 5 (${cmd_backend} backend); nothing runs"
invalid=()  # --dry_run true: the stages whose launch is not valid (each printed; exit 1 at the end)
for l in "${launches[@]}"; do
    IFS='|' read -r n fn what name <<< "${l}"
    if "${dry_run}"; then
        log "Stage ${n}: ${what}"
        "${fn}" || { invalid+=("${n}"); log "Error: stage ${n}'s ${name}launch is not valid (above); the dry run goes on"; }
    else
        "${fn}" > /dev/null || { log "Error: stage ${n}'s ${name}launch is not valid (above)"; exit 1; }
    fi
done
model_card() {  # stage 10; $1: --dry_run true|false
    python -m espnet_ext.bin.model_card --packed_model "${asr_exp}/packed_model.zip" \
        --out_dir "${asr_exp}/hf_repo" --results_md "${expdir}/RESULTS.md" \
        --results_json "${expdir}/results.json" --decode_config "${decode_config}" \
        --corpus "${corpus}" --license "${hf_license}" --language "${hf_language}" \
        ${hf_datasets:+--datasets "${hf_datasets}"} ${hf_repo:+--hf_repo "${hf_repo}"} --dry_run "$1"
}
if "${dry_run}"; then
    [ -z "${plan_hours}" ] && plan_hours=${pretrain_data_hours}
    if [ -n "${plan_hours}" ]; then
        python -m espnet_ext.bin.data_plan --hours "${plan_hours}" --chunk_size "${chunk_size}"
    fi
    log "Stage 6: the decoding job arrays ($([ "${inference_ngpu}" -gt 0 ] && echo "${inference_ngpu} GPU jobs" || echo "${nj} CPU jobs") per set)"
    lm_opts=()
    "${use_lm}" && lm_opts=(--lm_train_config "${lm_exp}/config.yaml" --lm_file "${lm_exp}/${lm_model}")
    for dset in ${test_sets}; do
        decode_command "${asr_exp}" "${inference_model}" "${decode_config}" \
            "${asr_exp}/$(decode_tag "${decode_config}" "${use_lm}")/${dset}"
        printf '%q ' "${dec_cmd[@]}"; echo
    done
    if in_stages 10; then log "Stage 10 (dry run): the model repository"; model_card true; fi
    if [ ${#invalid[@]} -gt 0 ]; then
        log "Dry run: the launch of stage(s) ${invalid[*]} is not valid (above): a real run stops there"
        exit 1
    fi
    exit 0
fi
launch_mode=(--dry_run false)

# array_over <log prefix> <items...> -- <command with ITEM>: one job array through
# ${train_cmd}, task k runs the command for the k-th item (utils/job_item.sh), --nj CPUs each.
array_over() {
    local prefix=$1 items=(); shift
    while [ "$1" != -- ]; do items+=("$1"); shift; done; shift
    mkdir -p "$(dirname "${prefix}")"
    printf '%s\n' "${items[@]}" > "${prefix}.items"
    # shellcheck disable=SC2086
    ${train_cmd} --num_threads "${nj}" JOB=1:${#items[@]} "${prefix}.JOB.log" \
        utils/job_item.sh "${prefix}.items" JOB "$@"
}

# The sets stage 1 prepares (pretrain_set is combined from its sources).
prep_sets=$(echo ${pretrain_sources} ${train_set} ${valid_set} ${test_sets} | tr ' ' '\n' | awk '!seen[$0]++' | tr '\n' ' ')
combine=""
if [ "${pretrain_sources}" != "${pretrain_set}" ]; then
    combine="${pretrain_set}=$(echo ${pretrain_sources} | tr ' ' ',')"
fi
feat_sets=$(echo ${pretrain_set} ${train_set} ${valid_set} ${test_sets} | tr ' ' '\n' | awk '!seen[$0]++' | tr '\n' ' ')

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: data preparation: ${prep_sets} -> ${datadir}"
    if [ "${corpus}" = embedded ]; then
        python local/make_embedded_corpus.py --out "${EMBEDDED}" --seed "${embedded_seed}" \
            --scale "${embedded_scale}" --nj "${nj}"
        python local/make_embedded_noise.py --out "${EMBEDDED}" --seed "${embedded_seed}"
    fi
    if [ -n "${MUSAN}${RIRS_NOISES}" ]; then  # the augmentation lists
        python -m espnet_ext.bin.prepare_noise --datadir "${datadir}" ${MUSAN:+--musan "${MUSAN}"} \
            ${RIRS_NOISES:+--rirs "${RIRS_NOISES}"} --noise_set "${noise_set}" --rir_set "${rir_set}"
    fi
    prepare=(python -m espnet_ext.bin.prepare_data --datadir "${datadir}"
        --librispeech "${librispeech_root}"
        ${LIBRILIGHT:+--librilight "${LIBRILIGHT}"}
        ${COMMONVOICE:+--commonvoice "${COMMONVOICE}"}
        --max_utt_seconds "${max_utt_seconds}" --segment_seconds "${segment_seconds}"
        --nj "${nj}")
    if [ "${cmd_backend}" = slurm ]; then
        # One array task per set (--nj audio-check workers on its node), then the combination.
        array_over "${datadir}/log/prepare" ${prep_sets} -- "${prepare[@]}" --sets ITEM
        ${train_cmd} "${datadir}/log/prepare.combine.log" "${prepare[@]}" --sets "${prep_sets}" \
            ${combine:+--combine "${combine}"} ${mix:+--utt2source}
    else
        "${prepare[@]}" --sets "${prep_sets}" ${combine:+--combine "${combine}"} ${mix:+--utt2source}
    fi
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    log "Stage 2: ${feats_type} shards (${speech_scp}): ${feat_sets} -> ${dumpdir}"
    if [ "${cmd_backend}" = slurm ]; then
        # One array task per set, --nj workers on its node.
        array_over "${dumpdir}/log/extract_feats" ${feat_sets} -- python -m espnet_ext.bin.extract_feats \
            --data_dir "${datadir}/ITEM" --out_dir "${dumpdir}/ITEM" --nj "${nj}" --chunk_size "${chunk_size}" --feats_type "${feats_type}"
    else
        for dset in ${feat_sets}; do
            python -m espnet_ext.bin.extract_feats --data_dir "${datadir}/${dset}" \
                --out_dir "${dumpdir}/${dset}" --nj "${nj}" --chunk_size "${chunk_size}" --feats_type "${feats_type}"
        done
    fi
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    log "Stage 3: tokenizer: sentencepiece unigram ${nbpe} on ${datadir}/${train_set}/text -> ${token_dir}"
    python -m espnet_ext.bin.tokenizer --text "${datadir}/${train_set}/text" \
        --out_dir "${token_dir}" --vocab_size "${nbpe}"
    if "${use_lm}"; then
        log "Stage 3: language model: ${lm_text} + ${train_set} transcripts -> ${lm_data} -> ${lm_exp}"
        [ -f "${lm_text}" ] || { log "Error: no LM text at ${lm_text} (--lm_text; or --use_lm false)"; exit 1; }
        # No dev or test sentence may be LM training text: exact matches are removed (and listed).
        exclude=()
        for dset in ${valid_set} ${test_sets}; do exclude+=(--exclude "${datadir}/${dset}/text"); done
        python -m espnet_ext.bin.lm_text --out_dir "${lm_data}" --bpemodel "${bpemodel}" \
            --text "${datadir}/${train_set}/text" --plain "${lm_text}" "${exclude[@]}" \
            --valid_text "${datadir}/${valid_set}/text"
        # Text-only shards of the LM text, for --iterator_type sharded (skipped when up to date)
        python -m espnet_ext.bin.shards text --text "${lm_data}/text" \
            --shape "${lm_data}/text_shape.bpe" --out_dir "${lm_data}"
        mkdir -p "${lm_exp}"
        lm_launch
        submitted_stop 3
        log "LM done: $(python -m espnet_ext.bin.summarize_log "${lm_exp}/train.log")"
    fi
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    log "Stage 4: self-supervised pre-training on ${pretrain_set} -> ${pretrain_exp}"
    mkdir -p "${pretrain_exp}"
    # The SSL task requires a token list even without text targets.
    printf '<blank>\n<unk>\n<sos/eos>\n' > "${pretrain_exp}/ssl_tokens.txt"
    # Pre-training reads stage 2's shards: check them all before starting.
    python -m espnet_ext.bin.shards verify --quick "${dumpdir}/${pretrain_set}" "${dumpdir}/${valid_set}"
    pretrain_launch
    submitted_stop 4
    log "Pre-training done: $(python -m espnet_ext.bin.summarize_log "${pretrain_exp}/train.log")"
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    log "Stage 5: fine-tuning on ${train_set} -> ${asr_exp}"
    if "${init_from_pretrained}"; then
        [ -e "${init_ckpt}" ] || { log "Error: no pre-trained encoder at ${init_ckpt}: run stage 4 first, or --init_from_pretrained false"; exit 1; }
    fi
    mkdir -p "${asr_exp}"
    asr_launch
    submitted_stop 5
    log "Fine-tuning done: $(python -m espnet_ext.bin.summarize_log "${asr_exp}/train.log")"
fi

# score_sets <asr_exp> <decode config> <with_lm: true|false> <sets...>: stage 7 for one model.
score_sets() {
    local exp=$1 config=$2 with_lm=$3; shift 3
    local dset dec_dir
    for dset in "$@"; do
        dec_dir=${exp}/$(decode_tag "${config}" "${with_lm}")/${dset}
        python -m espnet_ext.bin.score --ref "${dumpdir}/${dset}/text" --hyp "${dec_dir}/text" \
            --out_dir "${dec_dir}/score"
    done
}

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    log "Stage 6: decoding ${test_sets} with ${asr_exp}/${inference_model}"
    # shellcheck disable=SC2086
    decode_sets "${asr_exp}" "${inference_model}" "${decode_config}" "${use_lm}" ${test_sets}
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
    log "Stage 7: scoring"
    # shellcheck disable=SC2086
    score_sets "${asr_exp}" "${decode_config}" "${use_lm}" ${test_sets}
    python -m espnet_ext.bin.results --expdir "${expdir}"
    cat "${expdir}/RESULTS.md"
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
    log "Stage 8: packing ${asr_exp}"
    pack_lm=()
    if "${use_lm}"; then
        pack_lm=(--lm_train_config "${lm_exp}/config.yaml" --lm_file "${lm_exp}/${lm_model}")
    fi
    pack_results=()  # stage 7's tables travel with the model
    if [ -f "${expdir}/RESULTS.md" ]; then
        pack_results=(--option "${expdir}/RESULTS.md")
    else
        log "Warning: no ${expdir}/RESULTS.md (stage 7) to pack"
    fi
    python -m espnet2.bin.pack asr \
        --asr_train_config "${asr_exp}/config.yaml" \
        --asr_model_file "${asr_exp}/${inference_model}" \
        --option "${bpemodel}" \
        "${pack_results[@]}" \
        "${pack_lm[@]}" \
        --outpath "${asr_exp}/packed_model.zip"
    log "Packed: ${asr_exp}/packed_model.zip"
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
    if [ -n "${ablation_set}" ]; then
        low_set=${ablation_set}
        prefix=asr_ablation_${ablation_set}
    else
        low_set=${train_set}_${ablation_minutes}min
        prefix=asr_ablation_${ablation_minutes}min
    fi
    log "Stage 9: ablation on ${low_set}: scratch vs pretrained, seeds ${ablation_seeds} -> ${expdir}/${prefix}_*"
    [ -e "${init_ckpt}" ] || { log "Error: no pre-trained encoder at ${init_ckpt}: run stage 4 first"; exit 1; }
    # Stages 1-2 for the low-resource set (each skipped when done): a named set is prepared
    # from its corpus, a subset of train_set is drawn from stage 2's durations of it.
    if [ -n "${ablation_set}" ]; then
        python -m espnet_ext.bin.prepare_data --datadir "${datadir}" --sets "${ablation_set}" \
            --librispeech "${librispeech_root}" ${LIBRILIGHT:+--librilight "${LIBRILIGHT}"} \
            ${COMMONVOICE:+--commonvoice "${COMMONVOICE}"} \
            --max_utt_seconds "${max_utt_seconds}" --segment_seconds "${segment_seconds}" --nj "${nj}"
    else
        python -m espnet_ext.bin.subset_data --src "${datadir}/${train_set}" \
            --shape "${dumpdir}/${train_set}/${speech_shape}" --dst "${datadir}/${low_set}" \
            --minutes "${ablation_minutes}" --seed 0
    fi
    python -m espnet_ext.bin.extract_feats --data_dir "${datadir}/${low_set}" \
        --out_dir "${dumpdir}/${low_set}" --nj "${nj}" --chunk_size "${chunk_size}" --feats_type "${feats_type}"
    # the checkpoint its config selects: <phase>.<metric>.ave.pth of best_model_criterion
    # (valid.acc for joint training; valid.cer_ctc for a CTC-only fine-tuning, which has no acc)
    ablation_model=$(python -c 'import sys, yaml; c = (yaml.safe_load(open(sys.argv[1])) or {}).get("best_model_criterion") or [["valid", "acc"]]; print(f"{c[0][0]}.{c[0][1]}.ave.pth")' "${ablation_config}")
    finetune_max_passes=none  # the ablation trains many passes over its minutes of data by design
    finetune_data_hours=""    # counted from the subset's shards
    for seed in ${ablation_seeds}; do
        for arm in scratch pretrained; do
            run_exp=${expdir}/${prefix}_${arm}_seed${seed}
            log "  ${prefix}_${arm}_seed${seed}: fine-tuning"
            mkdir -p "${run_exp}"
            init=()
            [ "${arm}" = pretrained ] && init=("${encoder_init[@]}")
            finetune_launch "${run_exp}" "${low_set}" "${ablation_config}" "${init[@]}" --seed "${seed}" \
                > "${run_exp}/launch.out" 2>&1 || { log "Error: ${run_exp} failed: see ${run_exp}/train.log"; exit 1; }
            log "  $(python -m espnet_ext.bin.summarize_log "${run_exp}/train.log")"
            # shellcheck disable=SC2086
            decode_sets "${run_exp}" "${ablation_model}" "${ablation_decode_config}" false ${test_sets}
            # shellcheck disable=SC2086
            score_sets "${run_exp}" "${ablation_decode_config}" false ${test_sets}
        done
    done
    python -m espnet_ext.bin.ablation_report --expdir "${expdir}" --prefix "${prefix}" \
        --decode "$(decode_tag "${ablation_decode_config}" false)" --decode_config "${ablation_decode_config}"
    python -m espnet_ext.bin.results --expdir "${expdir}"
fi

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    log "Stage 10: model repository ${asr_exp}/hf_repo${hf_repo:+ -> Hugging Face Hub ${hf_repo}}"
    model_card false
fi

if [ ${stage} -le 11 ] && [ ${stop_stage} -ge 11 ]; then
    log "Stage 11: equal-time comparison: ${finetune_config} from ${init_ckpt} vs ${compare_config} from scratch, seeds ${compare_seeds}"
    [ -e "${init_ckpt}" ] || { log "Error: no pre-trained encoder at ${init_ckpt}: run stage 4 first"; exit 1; }
    compare_tag=$(decode_tag "${compare_decode_config}" false)
    # compare_arm <exp> <config> [args...]: train (resumable; skipped when finished), decode, score.
    compare_arm() {
        local exp=$1 config=$2; shift 2
        mkdir -p "${exp}"
        if [ ! -f "${exp}/train_seconds.json" ]; then
            finetune_launch "${exp}" "${train_set}" "${config}" "$@" \
                > "${exp}/launch.out" 2>&1 || { log "Error: ${exp} failed: see ${exp}/train.log"; exit 1; }
        fi
        log "  $(basename "${exp}"): $(python -m espnet_ext.bin.summarize_log "${exp}/train.log")"
    }
    compare_score() {
        # shellcheck disable=SC2086
        decode_sets "$1" "${inference_model}" "${compare_decode_config}" false ${test_sets}
        # shellcheck disable=SC2086
        score_sets "$1" "${compare_decode_config}" false ${test_sets}
    }
    # The pre-trained arm: the default run's fine-tuning config from the stage-4 encoder, per seed.
    # The seed of stage 5's own run (the config's seed:) is that run, finished: it is linked,
    # not trained again (same config, encoder, data and trainer; its train.log gives its time).
    stage5_seed=$(python -c 'import sys, yaml; print((yaml.safe_load(open(sys.argv[1])) or {}).get("seed", 0))' "${finetune_config}")
    for seed in ${compare_seeds}; do
        run_exp=${expdir}/asr_compare_pretrained_seed${seed}
        if [ "${seed}" = "${stage5_seed}" ] && "${init_from_pretrained}" && [ -z "${finetune_args}" ] \
                && [ ! -e "${run_exp}" ] && [ -f "${asr_exp}/${inference_model}" ]; then
            ln -s "$(basename "${asr_exp}")" "${run_exp}"
            python -m espnet_ext.bin.compare seconds "${pretrain_exp}/train.log" "${run_exp}/train.log" \
                --out "${run_exp}/train_seconds.json" > /dev/null
            log "  seed ${seed} is stage 5's run: $(basename "${run_exp}") -> $(basename "${asr_exp}")"
        fi
        compare_arm "${run_exp}" "${finetune_config}" "${encoder_init[@]}" --seed "${seed}"
        python -m espnet_ext.bin.compare seconds "${pretrain_exp}/train.log" "${run_exp}/train.log" \
            --out "${run_exp}/train_seconds.json" > /dev/null
        compare_score "${run_exp}"
    done
    budget_s=$(python -c 'import json, statistics, sys; print(statistics.mean(json.load(open(f))["total_s"] for f in sys.argv[1:]))' \
        $(for seed in ${compare_seeds}; do echo "${expdir}/asr_compare_pretrained_seed${seed}/train_seconds.json"; done))
    log "  the pretrained arm's training time (pre-training + fine-tuning, mean over seeds): ${budget_s} s"
    # The scratch arm: a short calibration run of its config gives its pace; its epochs fill the budget.
    calib_exp=${expdir}/asr_compare_stock_scratch_calib
    python -m espnet_ext.bin.compare scratch_config --config "${compare_config}" \
        --epochs "${compare_calib_epochs}" --out "${calib_exp}.yaml"
    compare_arm "${calib_exp}" "${calib_exp}.yaml" --seed 0
    python -m espnet_ext.bin.compare seconds "${calib_exp}/train.log" --out "${calib_exp}/train_seconds.json" > /dev/null
    python -m espnet_ext.bin.compare scratch_config --config "${compare_config}" \
        --calib_log "${calib_exp}/train.log" --budget_s "${budget_s}" --out "${expdir}/asr_compare_stock_scratch.yaml"
    for seed in ${compare_seeds}; do
        run_exp=${expdir}/asr_compare_stock_scratch_seed${seed}
        compare_arm "${run_exp}" "${expdir}/asr_compare_stock_scratch.yaml" --seed "${seed}"
        python -m espnet_ext.bin.compare seconds "${run_exp}/train.log" --out "${run_exp}/train_seconds.json" > /dev/null
        compare_score "${run_exp}"
    done
    python -m espnet_ext.bin.compare report --expdir "${expdir}" --decode "${compare_tag}"
    python -m espnet_ext.bin.results --expdir "${expdir}"
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
