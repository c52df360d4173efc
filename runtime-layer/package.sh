#!/usr/bin/env bash
# Zips a collected layer folder (collect.sh) and measures the zip against Lambda's limits; fails,
# saying which limit and by how much, when it does not fit. No Docker needed:
#   runtime-layer/package.sh COLLECTED_DIR ZIP
# Needs zip and unzip (its zipinfo reads the sizes back from the zip itself).
set -euo pipefail
dir=${1:?usage: package.sh COLLECTED_DIR ZIP}
zip_path=${2:?usage: package.sh COLLECTED_DIR ZIP}

fail() {
  echo "package.sh: $*" >&2
  exit 1
}

# Lambda's limits (bytes): a layer zip uploaded directly (not through S3) is at most 50 MiB; the
# function and all its layers unpacked at most 250 MiB. The runner's own code (dist/functions/
# runner/, ~1.5 MB today) needs part of that: RESERVED bytes are kept free for it.
MAX_ZIP=$((50 * 1024 * 1024))
MAX_UNPACKED=$((250 * 1024 * 1024))
RESERVED=${LAMBKIN_LAYER_RESERVED_BYTES:-$((10 * 1024 * 1024))}
[[ $RESERVED =~ ^[0-9]+$ ]] || fail "LAMBKIN_LAYER_RESERVED_BYTES must be a number of bytes (got $RESERVED)"
MAX_LAYER_UNPACKED=$((MAX_UNPACKED - RESERVED))

for tool in zip zipinfo; do
  command -v "$tool" >/dev/null || fail "needs $tool (Debian: apt-get install zip unzip; Amazon Linux: dnf install zip unzip)"
done
[ -d "$dir" ] || fail "$dir is not a folder"
dir=$(cd "$dir" && pwd -P)
# (zip adds .zip to a name without an extension, which would leave the zip elsewhere.)
case $zip_path in *.zip) ;; *) fail "the zip's name must end in .zip (got $zip_path)" ;; esac
case $zip_path in /*) ;; *) zip_path=$PWD/$zip_path ;; esac

# Links must stay inside the layer and be relative: unpacked under /opt, anything else dangles.
links=0
while IFS= read -r -d '' link; do
  links=$((links + 1))
  target=$(readlink -- "$link")
  case $target in /*) fail "the link ${link#"$dir"/} -> $target is absolute; collect.sh makes links relative" ;; esac
  resolved=$(readlink -f -- "$link") || fail "cannot resolve the link ${link#"$dir"/} -> $target"
  case $resolved in "$dir"/*) ;; *) fail "the link ${link#"$dir"/} -> $target leads out of the layer" ;; esac
  [ -e "$resolved" ] || fail "the link ${link#"$dir"/} -> $target points to nothing"
done < <(find "$dir" -type l -print0)

rm -f -- "$zip_path"
# -y: store symbolic links as links (without it zip stores a full copy of the file behind each);
# -X: no owner or time extras, which Lambda ignores.
(cd "$dir" && zip -q -r -y -X -9 "$zip_path" .)

# Measured on the zip: what Lambda receives and unpacks. A symbolic link counts as its target path.
zipped=$(stat -c %s -- "$zip_path")
unpacked=$(zipinfo -t "$zip_path" | awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^uncompressed/) print $(i - 2) }')
zipped_links=$(zipinfo -s "$zip_path" | grep -c '^l' || true)
[[ $unpacked =~ ^[0-9]+$ ]] || fail "could not read the unpacked size from zipinfo -t $zip_path"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "layer zip:      $zipped bytes ($(mib "$zipped")); limit $MAX_ZIP ($(mib "$MAX_ZIP"), a direct upload)"
echo "layer unpacked: $unpacked bytes ($(mib "$unpacked")); limit $MAX_LAYER_UNPACKED ($(mib "$MAX_UNPACKED") for function and layers, less $(mib "$RESERVED") kept for the function)"
echo "symbolic links: $zipped_links"

# Every limit missed is said, with by how much, before failing.
problems=()
[ "$zipped_links" -eq "$links" ] ||
  problems+=("the zip holds $zipped_links symbolic links, the folder $links: zip stored links as copies")
[ "$zipped" -le "$MAX_ZIP" ] ||
  problems+=("the zip is $((zipped - MAX_ZIP)) bytes ($(mib $((zipped - MAX_ZIP)))) over Lambda's limit of $MAX_ZIP bytes ($(mib "$MAX_ZIP")) for a layer uploaded directly")
[ "$unpacked" -le "$MAX_LAYER_UNPACKED" ] ||
  problems+=("unpacked, the layer is $((unpacked - MAX_LAYER_UNPACKED)) bytes ($(mib $((unpacked - MAX_LAYER_UNPACKED)))) over its limit of $MAX_LAYER_UNPACKED bytes: Lambda's $MAX_UNPACKED bytes ($(mib "$MAX_UNPACKED")) for the function and all its layers, less $RESERVED bytes ($(mib "$RESERVED")) kept for the function")
if [ "${#problems[@]}" -gt 0 ]; then
  printf 'package.sh: %s\n' "${problems[@]}" >&2
  echo "package.sh: $zip_path does not fit Lambda" >&2
  exit 1
fi
