# Kaldi-style option parsing, written for this project.
#
# Source it from a script after declaring that script's options, one per line, between
# the lines '# <options>' and '# </options>':
#     # <options>
#     nj=4            # number of parallel jobs
#     train_set=train # training set name
#     # </options>
#     . utils/parse_options.sh
# Then '--nj 8' or '--nj=8' sets nj; '--train-set' is the same as '--train_set'.
# An option that is not declared is an error; '--help' prints every option with its
# current default and its comment; a boolean option (default true/false) takes only
# true or false. Positional arguments are left in "$@".

_po_script=${BASH_SOURCE[1]:-$0}
_po_names=()
_po_help=()
_po_in=false
while IFS= read -r _po_line; do
  case "${_po_line}" in
    "# <options>"*) _po_in=true; continue ;;
    "# </options>"*) _po_in=false; continue ;;
  esac
  if ${_po_in} && [[ ${_po_line} =~ ^([A-Za-z_][A-Za-z0-9_]*)= ]]; then
    _po_names+=("${BASH_REMATCH[1]}")
    if [[ ${_po_line} =~ \#[[:space:]]*(.*)$ ]]; then _po_help+=("${BASH_REMATCH[1]}"); else _po_help+=(""); fi
  fi
done < "${_po_script}"

_po_usage() {
  echo "Usage: ${_po_script} [options]"
  [ -n "${help_message:-}" ] && echo "${help_message}"
  echo "Options (default in brackets):"
  local i n
  for i in "${!_po_names[@]}"; do
    n=${_po_names[$i]}
    printf '  --%-24s [%s] %s\n' "${n}" "${!n}" "${_po_help[$i]}"
  done
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) _po_usage; exit 0 ;;
    --*=*) _po_name=${1%%=*}; _po_name=${_po_name#--}; _po_value=${1#*=}; shift ;;
    --*)
      _po_name=${1#--}
      if [ $# -lt 2 ]; then echo "$0: option --${_po_name} needs a value" >&2; exit 1; fi
      _po_value=$2; shift 2 ;;
    *) break ;;
  esac
  _po_name=${_po_name//-/_}
  _po_known=false
  for _po_n in "${_po_names[@]}"; do [ "${_po_n}" = "${_po_name}" ] && _po_known=true && break; done
  if ! ${_po_known}; then
    echo "$0: unknown option --${_po_name} (see --help)" >&2
    exit 1
  fi
  _po_old=${!_po_name}
  if { [ "${_po_old}" = true ] || [ "${_po_old}" = false ]; } \
     && [ "${_po_value}" != true ] && [ "${_po_value}" != false ]; then
    echo "$0: option --${_po_name} takes true or false, got '${_po_value}'" >&2
    exit 1
  fi
  printf -v "${_po_name}" '%s' "${_po_value}"
done
unset _po_line _po_in _po_name _po_value _po_known _po_old _po_n
