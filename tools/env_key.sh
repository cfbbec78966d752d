#!/usr/bin/env bash
# Prints the key of the Python environment this checkout needs: a hash of what the installed
# package depends on (its metadata and the build hook that installs the start-up .pth).
# tools/setup_env.sh stamps the environment with it; path.sh compares.
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
cat "${root}/pyproject.toml" "${root}/setup.py" "${root}/espnet_ext.pth" | sha1sum | cut -c1-12
