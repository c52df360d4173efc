#!/usr/bin/env bash
# What CI checks of the layer recipe, on its own machine (any Linux with git, bash, zip and unzip;
# run from a checkout after `npm ci`):
#   bash runtime-layer/check.sh
# collect.sh into a temporary folder, package.sh (which measures the zip against Lambda's limits and
# fails if it does not fit), unzip as Lambda does, check that links stayed links and nothing is
# stored twice, and run git and bash from the unpacked layer with the runner's layer variables.
# The sizes it prints are those of this machine's git; the published layer is built on Amazon Linux.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd -P)
repo=$(dirname "$here")

fail() {
  echo "check.sh: $*" >&2
  exit 1
}

command -v unzip >/dev/null || fail "needs unzip (Debian: apt-get install unzip)"
work=$(mktemp -d "${TMPDIR:-/tmp}/lambkin-layer-check.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

bash "$here/collect.sh" "$work/collected" >/dev/null
bash "$here/package.sh" "$work/collected" "$work/lambkin-runtime-layer.zip"
root=$work/opt
mkdir "$root"
unzip -q "$work/lambkin-runtime-layer.zip" -d "$root"

# Links stayed links: as many as collected, and no two regular files with the same bytes.
collected_links=$(find "$work/collected" -type l | wc -l)
unpacked_links=$(find "$root" -type l | wc -l)
[ "$unpacked_links" -gt 0 ] || fail "the unpacked layer has no symbolic links: git-core's helpers were stored as copies"
[ "$unpacked_links" -eq "$collected_links" ] ||
  fail "unpacked, the layer has $unpacked_links symbolic links; collected, $collected_links"
duplicates=$(find "$root" -type f ! -empty -print0 | xargs -0 sha256sum | sort | uniq -w 64 -D | sed 's/^[0-9a-f]* *//')
[ -z "$duplicates" ] || fail "files stored more than once (should be links):"$'\n'"$duplicates"
[ -L "$root/bin/git" ] || fail "bin/git is not a link to libexec/git-core/git"

# The runner's variables for a layer at $root (src/runner/runtime-layer.ts, the code the runner runs).
mapfile -t layer_env < <(cd "$repo" && node --import tsx --input-type=module -e "
  const { layerEnvironment } = await import('./src/runner/runtime-layer.ts');
  for (const [key, value] of Object.entries(layerEnvironment(process.argv[1]))) console.log(key + '=' + value);
" "$root")
[ "${#layer_env[@]}" -gt 0 ] || fail "layerEnvironment() gave no variables for $root"

# Every library a binary in the layer loads, other than the C library, comes from the layer's lib/.
while IFS= read -r -d '' binary; do
  head -c 4 -- "$binary" | grep -q $'\x7fELF' || continue
  { env -i PATH=/usr/bin:/bin "${layer_env[@]}" ldd -- "$binary" || true; } |
    awk -v lib="$root/lib/" '/not found/ { print; next }
      /=> \// && index($3, lib) != 1 && $3 !~ /\/(libc|libm|libpthread|libdl|librt|ld-linux[^\/]*)\.so/ { print }' |
    { ! grep . >&2; } || fail "${binary#"$root"/} loads the libraries above from outside the layer"
done < <(find "$root" -type f -perm -u+x -print0)

# git from the unpacked layer alone: a scratch environment like the runner's (src/runner/source.ts).
home=$work/home
mkdir "$home"
in_layer() {
  env -i PATH="$root/bin:/usr/bin:/bin" HOME="$home" LANG=C GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null \
    GIT_AUTHOR_NAME=check GIT_AUTHOR_EMAIL=check@localhost GIT_COMMITTER_NAME=check \
    GIT_COMMITTER_EMAIL=check@localhost "${layer_env[@]}" "$@"
}
git=$root/bin/git
version=$(in_layer "$git" --version)
[[ $version == "git version "* ]] || fail "git --version printed: $version"
[ "$(in_layer "$git" --exec-path)" = "$root/libexec/git-core" ] || fail "git does not take its helpers from the layer"
in_layer "$git" init -q "$work/origin"
echo layer >"$work/origin/file"
in_layer "$git" -C "$work/origin" add file
in_layer "$git" -C "$work/origin" commit -q -m 'from the layer'
# Through the upload-pack helper (a link in git-core), shallow like a `git: {depth: 1}` build.
in_layer "$git" clone -q --depth 1 "file://$work/origin" "$work/clone"
[ "$(cat "$work/clone/file")" = layer ] || fail "the clone does not hold the committed file"
# The https helper is a binary of its own that loads curl and TLS from lib/: it must start.
remote_http=$(in_layer "$root/libexec/git-core/git-remote-https" 2>&1 || true)
[[ $remote_http == *"remote-curl: usage"* ]] || fail "git-remote-https does not start: $remote_http"
[ "$(in_layer "$root/bin/bash" -c 'echo layer-bash')" = layer-bash ] || fail "bash from the layer does not run"

echo "git from the layer: $version; init, commit, shallow clone and the https helper work"
