#!/usr/bin/env bash
# A build step of tests/security/deploy.test.ts, run as install, test and deploy of a build that
# deploys with a deploy role: it looks for AWS credentials, and for the controller's grant of the
# deploy role (a presigned STS AssumeRole URL), everywhere a step can: its environment, its own
# /proc environ, every ancestor's environ, command line and memory, and the files of its work area.
# It prints what it finds as `FOUND[<phase>] <where>: <text>`; each probe ends with a marker.
# Patterns and markers are computed, so a grep of this file's own text never prints one.
set +e
phase="$1"
A='AWS_'
X='X-Amz-'
PATTERN="${A}ACCESS_KEY_ID|${A}SECRET_ACCESS_KEY|${A}SESSION_TOKEN|${X}Signature|${X}Credential|${X}Security-Token|Assume""Role|ASIA[A-Z0-9]{12,}"
mark() { echo "##DEPLOY-PROBE-$phase-$1-$((6 * 7))"; }
report() {
  local where="$1" line
  while IFS= read -r line; do printf 'FOUND[%s] %s: %s\n' "$phase" "$where" "${line:0:300}"; done
}

echo "deploy probe $phase: uid=$(id -u) pid=$$ ppid=$PPID"

env | grep -aE "$PATTERN" | report env
tr '\0' '\n' </proc/self/environ 2>/dev/null | grep -aE "$PATTERN" | report self-environ
mark env

ancestors=()
p=$PPID
while [ -n "$p" ] && [ "$p" -gt 0 ]; do
  ancestors+=("$p")
  [ "$p" -eq 1 ] && break
  p=$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null)
done
echo "ancestors: ${ancestors[*]}"
for p in "${ancestors[@]}"; do
  echo "ancestor $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>&1 | head -c 200)"
  tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -aE "$PATTERN" | report "cmdline-$p"
  tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -aE "$PATTERN" | report "environ-$p"
done
mark ancestors

for p in "${ancestors[@]}"; do
  if ! maps=$(cat "/proc/$p/maps" 2>&1); then
    echo "maps-$p: $maps"
    continue
  fi
  echo "maps-$p: readable"
  printf '%s\n' "$maps" | awk '$2 ~ /^rw/ {split($1, a, "-"); print a[1], a[2]}' | head -n 400 |
    while read -r start end; do
      size=$((16#$end - 16#$start))
      [ "$size" -gt $((64 * 1024 * 1024)) ] && continue
      dd if="/proc/$p/mem" bs=1M iflag=skip_bytes,count_bytes skip=$((16#$start)) count=$size 2>/dev/null
    done | timeout 20 grep -aEo ".{0,40}($PATTERN).{0,60}" | head -n 20 | report "mem-$p"
done
mark memory

# The work area: checkout, HOME and TMPDIR are all under it.
root=$(dirname "$PWD")
echo "work area: $root"
timeout 10 grep -rIaEo -m 5 ".{0,40}($PATTERN).{0,60}" "$root" "$HOME" "$TMPDIR" 2>/dev/null |
  grep -v 'deploy-probe.sh:' | head -n 50 | report files
mark files

# The deploy step uses what it was given: a digest the test compares with what STS issued.
if [ "$phase" = deploy ]; then
  k="${A}ACCESS_KEY_ID" s="${A}SECRET_ACCESS_KEY" t="${A}SESSION_TOKEN"
  echo "deploy credentials sha256=$(printf %s "${!k}:${!s}:${!t}" | sha256sum | cut -c1-64)"
fi
