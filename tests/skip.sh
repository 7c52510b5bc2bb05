#!/bin/sh
# tests/skip.sh - stands in for a test this build cannot make (CMakeLists.txt registers it
# with this script): says why and exits 77, which CTest reports as skipped.
echo "skip: $*"
exit 77
