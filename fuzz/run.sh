#!/usr/bin/env bash
# Builds every fuzz target and runs each one after the other for SECONDS (default
# 60), starting from the committed corpus (fuzz/corpus/<target>/) plus the seeds.
# Exits non-zero if any target crashes, times out or runs out of memory; the input
# that did it is saved under fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# One process, one target at a time: it is meant for a shared machine. New inputs
# that add coverage go to fuzz/target/corpus/<target>/, not to the committed corpus;
# the set-cover merge in fuzz/README.md decides what is worth committing.
set -euo pipefail

seconds=${1:-60}
shift || true
case $seconds in
'' | *[!0-9]*)
    echo "run.sh: SECONDS must be a whole number, got '$seconds'" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")"
# cargo-fuzz passes -Zsanitizer and other nightly flags; a stable toolchain takes
# them with RUSTC_BOOTSTRAP=1, so no nightly toolchain is needed.
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: cargo-fuzz is missing: install it with 'cargo install cargo-fuzz'" >&2
    exit 2
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list | grep -vx seeds)
fi

# `cargo fuzz build` builds the seeds writer too (it is a bin of this crate).
cargo fuzz build
triple=$(rustc -vV | sed -n 's/^host: //p')
# The seeds are written from the library and the key fixtures, so they follow the
# code; they go into a scratch directory beside each target's working corpus.
"target/$triple/release/seeds" target/seeds >/dev/null
for target in "${targets[@]}"; do
    if [ ! -x "target/$triple/release/$target" ] || [ "$target" = seeds ]; then
        echo "run.sh: no fuzz target '$target'; the targets are: $(cargo fuzz list | grep -vx seeds | tr '\n' ' ')" >&2
        exit 2
    fi
done
failed=()
for target in "${targets[@]}"; do
    work=target/corpus/$target
    mkdir -p "$work" "artifacts/$target"
    inputs=("$work")
    [ -d "corpus/$target" ] && inputs+=("corpus/$target")
    [ -d "target/seeds/$target" ] && inputs+=("target/seeds/$target")
    echo "== $target: ${seconds}s"
    if ! "target/$triple/release/$target" "${inputs[@]}" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="artifacts/$target/" -print_final_stats=1 \
        >"target/$target.log" 2>&1; then
        failed+=("$target")
        tail -n 40 "target/$target.log" >&2
    fi
    grep -E '^#[0-9]+.*DONE|^stat::number_of_executed_units' "target/$target.log" || true
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "run.sh: failed: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/target/*.log)" >&2
    exit 1
fi
echo "run.sh: ${#targets[@]} targets ran ${seconds}s each, no crash"
