#!/usr/bin/env bash
# Builds runtime-layer/dist/lambkin-runtime-layer.zip with Docker (or Podman), for x86_64 or arm64:
#   runtime-layer/build.sh [x86_64|arm64]
# The image runs collect.sh and package.sh on Amazon Linux 2023; package.sh prints the zip's sizes
# and fails the build when they exceed Lambda's limits (runtime-layer/README.md).
# Then publish it and pass the ARN to the stack (see runtime-layer/README.md).
set -euo pipefail
cd "$(dirname "$0")"
arch=${1:-x86_64}
case "$arch" in
  x86_64) platform=linux/amd64 ;;
  arm64) platform=linux/arm64 ;;
  *) echo "build.sh: architecture must be x86_64 or arm64 (got $arch)" >&2; exit 2 ;;
esac
engine=$(command -v docker || command -v podman || true)
if [ -z "$engine" ]; then
  echo "build.sh: needs docker or podman to build the layer on Amazon Linux 2023" >&2
  exit 1
fi
mkdir -p dist
"$engine" build --platform "$platform" --target export --output "type=local,dest=dist" .
echo "built runtime-layer/dist/lambkin-runtime-layer.zip ($arch)"
