#!/usr/bin/env bash
# Print the absolute path of a CPython interpreter the project can use, or fail with a clear message.
#
#   scripts/find-python.sh          a Python >= 3.12 (for the dev venv and the SAM CLI tool venv)
#   scripts/find-python.sh --exact  a Python 3.12 exactly (`sam build` for the python3.12 runtime)
#   scripts/find-python.sh --bindir a directory to prepend to PATH so that `python3.12` resolves
#                                   to that interpreter (`sam build` looks it up by that name)
#
# Search order: a working `python3.12` on PATH (pyenv shims exist even when 3.12 is not selected,
# so every candidate is run, not just found), then $(pyenv root)/versions/3.12*/bin/python3.12
# (newest first), then `python3` if its version fits.
set -euo pipefail

mode=${1:-}
case "$mode" in
    "" | --exact | --bindir) ;;
    *) echo "usage: $0 [--exact|--bindir]" >&2; exit 2 ;;
esac

# Print sys.executable of $1 if it runs and its version fits the mode.
probe() {
    local want=">="
    [ -n "$mode" ] && want="=="
    "$1" - "$want" 2>/dev/null <<'EOF'
import sys
exact = sys.argv[1] == "=="
ok = sys.version_info[:2] == (3, 12) if exact else sys.version_info[:2] >= (3, 12)
if not ok or sys.implementation.name != "cpython":
    raise SystemExit(1)
print(sys.executable)
EOF
}

candidates=()
if command -v python3.12 >/dev/null 2>&1; then
    candidates+=("$(command -v python3.12)")
fi
pyenv_root=""
if command -v pyenv >/dev/null 2>&1; then
    pyenv_root=$(pyenv root 2>/dev/null || true)
fi
pyenv_root=${pyenv_root:-${PYENV_ROOT:-$HOME/.pyenv}}
if [ -d "$pyenv_root/versions" ]; then
    while IFS= read -r p; do
        candidates+=("$p")
    done < <(ls -d "$pyenv_root"/versions/3.12*/bin/python3.12 2>/dev/null | sort -rV)
fi
if command -v python3 >/dev/null 2>&1; then
    candidates+=("$(command -v python3)")
fi

for c in "${candidates[@]}"; do
    if exe=$(probe "$c") && [ -n "$exe" ]; then
        if [ "$mode" = "--bindir" ]; then
            dir=$(dirname "$exe")
            if [ "$(basename "$exe")" != "python3.12" ] && [ ! -x "$dir/python3.12" ]; then
                # The interpreter is 3.12 but not called python3.12: give sam a directory that has it.
                here=$(cd "$(dirname "$0")/.." && pwd)
                dir="$here/.tools/python3.12-bin"
                mkdir -p "$dir"
                ln -sf "$exe" "$dir/python3.12"
            fi
            echo "$dir"
        else
            echo "$exe"
        fi
        exit 0
    fi
done

if [ -n "$mode" ]; then need="Python 3.12 (the Lambda runtime of template.yaml)"; else need="Python >= 3.12"; fi
cat >&2 <<EOF
error: no usable $need found.
  tried: ${candidates[*]:-(no python3.12, no pyenv 3.12.x, no python3 on PATH)}
  fix one of:
    - install it with pyenv:   pyenv install 3.12 (it is then found under \$(pyenv root)/versions/)
    - select it with pyenv:    pyenv shell 3.12.1   (so that python3.12 runs)
    - put a python3.12 on PATH (e.g. apt/brew/python.org, or actions/setup-python in CI)
EOF
exit 1
