#!/usr/bin/env bash
# tests/test_layers.sh - the include directions between the layers (docs/architecture.md,
# "Layers") and no include loops between modules: tests/layers.py over the source tree.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/layers.py" "$here/.."
