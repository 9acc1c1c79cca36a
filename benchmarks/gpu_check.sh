#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): installs what the GPU machine lacks from the wheels in .whl/, then runs it.
#   bash benchmarks/gpu_check.sh              # one H100: over 10 minutes; --models smollm2-135m within 5.5
#   bash benchmarks/gpu_check.sh --cpu-smoke  # the same code on the CPU with tiny sizes, under 2 minutes
#   bash benchmarks/gpu_check.sh --commands [--cpu-smoke]  # train, sweep and rl end to end (benchmarks/gpu_commands.py)
# .whl/ (git-ignored) is filled on a machine with the network, with the versions of the development environment:
#   pip download --only-binary=:all: --python-version 3.12 --no-deps -d .whl \
#     --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
#     trl==1.16.0 torchjd==0.18.0 pymoo==0.6.2 datasets==5.2.0 gguf==0.19.0 vaderSentiment==3.3.2 dill==0.4.1 \
#     multiprocess==0.70.19 xxhash==4.1.0 pandas==3.1.1 python-dateutil==4.0.0 tzdata==2026.6 requests==2.34.2 \
#     urllib3==2.8.0 charset-normalizer==3.5.3 certifi==2026.10.19.post1 moocore==0.3.2 cffi==2.1.1 pycparser==3.12 \
#     platformdirs==4.14.8
# pyarrow (datasets needs it; its 55 MB wheel does not fit in the 64 MiB carried to the GPU machine) must already be
# installed there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
missing=$("$PYTHON" - <<'PY'
import importlib.util
modules = {"trl": "trl", "torchjd": "torchjd", "pymoo": "pymoo", "datasets": "datasets", "gguf": "gguf",
           "vaderSentiment": "vaderSentiment", "dill": "dill", "multiprocess": "multiprocess", "xxhash": "xxhash",
           "pandas": "pandas", "dateutil": "python-dateutil", "tzdata": "tzdata", "requests": "requests",
           "urllib3": "urllib3", "charset_normalizer": "charset-normalizer", "certifi": "certifi",
           "moocore": "moocore", "cffi": "cffi", "pycparser": "pycparser", "platformdirs": "platformdirs"}
print(" ".join(package for module, package in modules.items() if importlib.util.find_spec(module) is None))
PY
)
if [ -n "$missing" ]; then
    echo "installing from .whl/ ($(du -sh .whl | cut -f1)): $missing"
    "$PYTHON" -m pip install --quiet --no-index --find-links .whl --no-deps $missing
fi
if ! "$PYTHON" -c "import paretoalign" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet --no-deps --no-build-isolation -e .
fi
if [ "${1:-}" = "--commands" ]; then
    shift
    exec "$PYTHON" benchmarks/gpu_commands.py "$@"
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
