#!/usr/bin/env bash
# Every file the binary compiles in must reach the image's build stage: it must sit under a path
# the Dockerfile COPYs and must not be excluded by .dockerignore. The list of compiled-in files is
# cargo's own (the dep-info file it writes beside the binary), so an include_str!, include_bytes!
# or sqlx::migrate! anywhere is covered, whatever macro builds its path.
#
# Usage: scripts/check-build-context.sh [DEP_INFO]   (default target/debug/agentprof.d; build the
#        binary first). No container engine needed; CI runs it from scripts/test.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
depinfo=${1:-${CARGO_TARGET_DIR:-target}/debug/agentprof.d}
[ -f "$depinfo" ] || { echo "check-build-context: no $depinfo; build the binary first" >&2; exit 2; }

# The sources of the build stage's COPY lines (the last word of each is the destination).
mapfile -t copied < <(awk '
  /^FROM / { stage++ }
  stage == 1 && /^COPY / && !/--from=/ {
    n = split($0, w, /[ \t]+/)
    for (i = 2; i < n; i++) if (w[i] !~ /^--/) print w[i]
  }' Dockerfile)
[ "${#copied[@]}" -gt 0 ] || { echo "check-build-context: found no COPY in the Dockerfile's build stage" >&2; exit 2; }

# The project's own files in the dep-info (its first line lists them after the colon; spaces in
# paths are escaped as '\ ', which none of ours have).
mapfile -t compiled < <(head -n 1 "$depinfo" | cut -d: -f2- | tr ' ' '\n' \
  | grep -E "^$root/" | sed "s|^$root/||" | grep -v '^target/' | sort -u)
[ "${#compiled[@]}" -gt 0 ] || { echo "check-build-context: $depinfo names no project file" >&2; exit 2; }

ignored() { # path: whether a .dockerignore line excludes it or a folder above it
  local path=$1 pattern
  [ -f .dockerignore ] || return 1
  while IFS= read -r pattern; do
    pattern=${pattern%%#*}; pattern=${pattern%"${pattern##*[![:space:]]}"}; pattern=${pattern#/}
    [ -n "$pattern" ] || continue
    local prefix=$path
    while :; do
      # shellcheck disable=SC2053 # the pattern is a glob on purpose
      [[ $prefix == $pattern ]] && return 0
      [[ $prefix == */* ]] || break
      prefix=${prefix%/*}
    done
  done < .dockerignore
  return 1
}

missing=0
for file in "${compiled[@]}"; do
  inside=""
  for src in "${copied[@]}"; do
    src=${src%/}; src=${src#./}
    if [ "$file" = "$src" ] || [[ $file == "$src"/* ]]; then inside=1; break; fi
  done
  if [ -z "$inside" ]; then
    echo "check-build-context: $file is compiled in, but the Dockerfile does not COPY it" >&2; missing=1
  elif ignored "$file"; then
    echo "check-build-context: $file is compiled in, but .dockerignore leaves it out" >&2; missing=1
  fi
done
[ "$missing" = 0 ] || exit 1
echo "check-build-context: all ${#compiled[@]} compiled-in files are in the image's build context"
