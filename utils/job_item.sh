#!/usr/bin/env bash
# Run a command for item <index> of a list (one item a line): 'ITEM' in each argument is
# replaced by that line. A job array's task runs the item of its index:
#     ${train_cmd} JOB=1:N log.JOB utils/job_item.sh <list> JOB <command with ITEM ...>
set -u
if [ $# -lt 3 ]; then echo "Usage: $0 <list> <index> <command ...>" >&2; exit 2; fi
list=$1 index=$2; shift 2
item=$(sed -n "${index}p" "${list}")
[ -n "${item}" ] || { echo "$0: ${list} has no item ${index}" >&2; exit 2; }
args=()
for a in "$@"; do args+=("${a//ITEM/${item}}"); done
exec "${args[@]}"
