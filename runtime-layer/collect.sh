#!/usr/bin/env bash
# Lays out the layer in $1 (run inside the build image): binaries, git's helpers, and their libraries.
set -euo pipefail
out=${1:?usage: collect.sh OUTPUT_DIR}
mkdir -p "$out/bin" "$out/lib" "$out/libexec/git-core" "$out/share/git-core"

cp -a "$(command -v git)" "$out/bin/"
cp -a "$(command -v bash)" "$out/bin/"
# git --exec-path: /usr/libexec/git-core on Amazon Linux, /usr/lib/git-core elsewhere.
cp -a "$(git --exec-path)/." "$out/libexec/git-core/"
cp -a /usr/share/git-core/templates "$out/share/git-core/"

# Libraries: everything the binaries and helpers link to, except the C library and the loader,
# which the runtime always has.
# (ldd fails on git-core's shell scripts: those have no libraries, so its status is ignored.)
{ find "$out/bin" "$out/libexec/git-core" -type f -perm -u+x -print0 | xargs -0 ldd 2>/dev/null || true; } |
  awk '/=> \// { print $3 }' |
  sort -u |
  grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' |
  while read -r library; do cp -aL "$library" "$out/lib/"; done

# The layer must work from /opt: git finds its helpers through GIT_EXEC_PATH, which the runner sets
# (src/builder/runtime-layer.ts), so no path is compiled in.
"$out/bin/git" --version
