#!/usr/bin/env bash
# Runs every cargo-fuzz target in the repository for a short time (default 20 s each).
# Installs cargo-fuzz from crates.io when missing. The machine has only a stable toolchain;
# RUSTC_BOOTSTRAP=1 lets it accept the nightly-only sanitizer flags cargo-fuzz passes.
#
#   scripts/fuzz.sh            # every target, 20 s each
#   scripts/fuzz.sh 120        # every target, 2 min each
#   scripts/fuzz.sh 60 spiffe  # targets whose name contains "spiffe"
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
filter="${2:-}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
export RUSTC_BOOTSTRAP=1
# One target directory for every fuzz workspace: their dependencies compile once.
target_dir="$PWD/target/fuzz"

status=0
for dir in */fuzz; do
  [ -f "$dir/Cargo.toml" ] || continue
  crate="${dir%/fuzz}"
  for target in $(cd "$crate" && cargo fuzz list); do
    case "$target" in *"$filter"*) ;; *) continue ;; esac
    echo "==> fuzzing $crate/$target for ${seconds}s"
    mkdir -p "$dir/corpus/$target"
    # Checked-in seeds are read as a second corpus folder so libFuzzer never writes into them.
    seeds=()
    [ -d "$dir/seeds/$target" ] && seeds=("fuzz/seeds/$target")
    if ! (cd "$crate" && cargo fuzz run --target-dir "$target_dir" "$target" "fuzz/corpus/$target" "${seeds[@]}" -- \
          -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=0 2>&1 | tail -n 3); then
      echo "!! $crate/$target found a crash (see $dir/artifacts/$target)"
      status=1
    fi
  done
done
exit $status
