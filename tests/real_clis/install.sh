#!/usr/bin/env bash
# Install the real claude, codex and gemini CLIs from npm into a prefix, for the
# `real_cli` tests. Usage: install.sh [PREFIX]   (default: $HOME/.cache/lok-clis)
# The binaries land in PREFIX/node_modules/.bin; export LOK_CLI_PREFIX=PREFIX for the tests.
# Idempotent: when the pinned versions are already there it returns at once.
set -euo pipefail

prefix="${1:-$HOME/.cache/lok-clis}"
# Versions verified against lok's loopback servers (see shared/research/real-backends.md).
# claude-code 2.1.197 is the newest whose engines accept node 20.
packages=(
  "@anthropic-ai/claude-code@2.1.197"
  "@openai/codex@0.169.0"
  "@google/gemini-cli@0.61.0"
)
stamp="$prefix/.lok-clis-installed"
want="${packages[*]}"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  missing=0
  for bin in claude codex gemini; do
    [[ -x "$prefix/node_modules/.bin/$bin" ]] || missing=1
  done
  if [[ $missing -eq 0 ]]; then
    echo "lok-clis: already installed in $prefix"
    exit 0
  fi
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "lok-clis: npm not found; install Node.js >= 20 first" >&2
  exit 1
fi

mkdir -p "$prefix"
echo "lok-clis: installing ${packages[*]} into $prefix"
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "${packages[@]}"

for bin in claude codex gemini; do
  if [[ ! -x "$prefix/node_modules/.bin/$bin" ]]; then
    echo "lok-clis: $bin is missing after install" >&2
    exit 1
  fi
done
printf '%s' "$want" > "$stamp"
echo "lok-clis: installed; export LOK_CLI_PREFIX=$prefix"
