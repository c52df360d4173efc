#!/usr/bin/env bash
# Lays out the layer in $1: binaries, git's helpers and templates, and their libraries, each file
# once. Runs inside the build image (Dockerfile) and, for the checks, on any Linux with git and bash:
#   runtime-layer/collect.sh OUTPUT_DIR
# The git it collects is the one on PATH, with its helpers from `git --exec-path`.
#
# Size matters (runtime-layer/README.md): most of git-core's helpers are the git binary itself,
# installed as symbolic links (Debian), hard links (git's own default) or copies. A zip stores hard
# links and copies as separate files, so every file that has the same content and mode as another
# becomes a relative symbolic link to it, which `zip --symlinks` (package.sh) and Lambda keep.
set -euo pipefail
out=${1:?usage: collect.sh OUTPUT_DIR}
mkdir -p "$out/bin" "$out/lib" "$out/libexec/git-core" "$out/share/git-core"
out=$(cd "$out" && pwd -P)

fail() {
  echo "collect.sh: $*" >&2
  exit 1
}

# git --exec-path: /usr/libexec/git-core on Amazon Linux, /usr/lib/git-core elsewhere.
exec_path=$(git --exec-path)
# -a keeps symbolic links as links (and hard links within the copy as hard links, made links below).
cp -a "$exec_path/." "$out/libexec/git-core/"
# -L: the command on PATH may itself be a link (into git-core, or /bin -> /usr/bin).
cp -L --preserve=mode "$(command -v git)" "$out/bin/git"
cp -L --preserve=mode "$(command -v bash)" "$out/bin/bash"
cp -a /usr/share/git-core/templates "$out/share/git-core/"

# A link that is absolute or leads out of the layer would point elsewhere under /opt: it becomes a
# copy of what it points to here, and the step below makes it a relative link again when that
# content is in the layer.
while IFS= read -r -d '' link; do
  target=$(readlink -f -- "$link") || fail "cannot resolve the link $link"
  [ -e "$target" ] || fail "the link ${link#"$out"/} points to $(readlink -- "$link"), which does not exist"
  case $(readlink -- "$link") in
    /*) ;;
    *) case $target in "$out"/*) continue ;; esac ;;
  esac
  rm -f -- "$link"
  cp -L --preserve=mode -- "$target" "$link"
done < <(find "$out" -type l -print0)

# One file per content: every other file with the same bytes and mode becomes a relative link to
# the one kept, preferring libexec/git-core (where git's own links point) and then the shortest name
# (so libexec/git-core/git, not git-add). Empty files are left alone.
dedupe() {
  find "$@" -type f ! -empty -print0 |
    xargs -0 -r sha256sum |
    while read -r sum path; do
      rel=${path#"$out"/}
      case $rel in libexec/*) rank=0 ;; bin/*) rank=1 ;; *) rank=2 ;; esac
      name=${rel##*/}
      printf '%s-%s\t%s\t%04d\t%s\n' "$sum" "$(stat -c %a -- "$path")" "$rank" "${#name}" "$rel"
    done |
    sort -t $'\t' -k1,1 -k2,2n -k3,3n -k4,4 |
    awk -F '\t' '$1 == key { print kept "\t" $4; next } { key = $1; kept = $4 }' |
    while IFS=$'\t' read -r kept duplicate; do
      ln -sfr -- "$out/$kept" "$out/$duplicate"
    done
}
dedupe "$out/bin" "$out/libexec"

# Libraries: everything the binaries and helpers link to, except the C library and the loader,
# which the runtime always has; each once, under the name the binaries ask for.
# (ldd fails on git-core's shell scripts: those have no libraries, so its status is ignored.)
{ find "$out/bin" "$out/libexec/git-core" -type f -perm -u+x -print0 | xargs -0 ldd 2>/dev/null || true; } |
  awk '/=> \// { print $3 }' |
  { grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' || true; } |
  sort -u |
  while read -r library; do
    [ -e "$out/lib/${library##*/}" ] || cp -L --preserve=mode -- "$library" "$out/lib/"
  done
dedupe "$out/lib"

# The layer must work from /opt: git finds its helpers through GIT_EXEC_PATH, which the runner sets
# (src/runner/runtime-layer.ts), so no path is compiled in.
GIT_EXEC_PATH="$out/libexec/git-core" LD_LIBRARY_PATH="$out/lib" "$out/bin/git" --version
