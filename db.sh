# Corpus roots. Each is taken from the environment when set.
# LIBRISPEECH: the folder holding train-clean-100/, dev-clean/, test-clean/, ... (LibriSpeech layout)
# LIBRISPEECH_LM_TEXT: librispeech-lm-norm.txt.gz, LibriSpeech's text-only LM corpus
#              (https://www.openslr.org/11); stage 3's LM text with --corpus librispeech
# LIBRILIGHT:  the folder holding small/, medium/, large/ (Libri-Light layout, .flac + .json)
# COMMONVOICE: a Common Voice language folder holding clips/ and validated.tsv, train.tsv, ...
# EMBEDDED:    where the recipe synthesizes its embedded corpus (LibriSpeech layout)
# MUSAN:       MUSAN (https://www.openslr.org/17): noise/, music/, speech/ (waveform augmentation)
# RIRS_NOISES: RIRS_NOISES (https://www.openslr.org/28): simulated_rirs/ (reverberation)
#              With --corpus embedded both default to the embedded corpus's own sets.
LIBRISPEECH=${LIBRISPEECH:-}
LIBRISPEECH_LM_TEXT=${LIBRISPEECH_LM_TEXT:-}
LIBRILIGHT=${LIBRILIGHT:-}
COMMONVOICE=${COMMONVOICE:-}
EMBEDDED=${EMBEDDED:-downloads/embedded_librispeech}
MUSAN=${MUSAN:-}
RIRS_NOISES=${RIRS_NOISES:-}
