#!/usr/bin/env bash
# The sharded studies on a real Slurm: starts a one-node cluster on this machine (every file
# under a temporary folder), submits through the scripts the binaries generate a small theory
# sweep (`theory-sim slurm --submit`, 3 shards) and a tiny synthetic empirical study (its
# generated submit.sh, 2 shards), waits for them, and checks that each merged folder holds the
# same bits as a single-process run of the same config: every file of the single run's folder
# (results, tables, summaries, label sets, figures, per-run files), with only the wall-clock
# fields masked (`seconds`, `images_per_sec` in JSON and in epochs.csv) and timings/ and timings.csv left out.
#
# Exit 0 when everything matched, or, printing "SKIPPED: ... because ...", when Slurm cannot be
# installed or its daemons do not come up within a minute (not root, no apt-get, ...); any other
# failure exits non-zero. Every daemon it started is stopped on exit.
#
# Usage: tests/slurm_test.sh   (from anywhere; builds the release binaries if they are stale)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
# shellcheck source=tests/slurm_cluster.sh
source tests/slurm_cluster.sh

start=$SECONDS
work="$(mktemp -d /tmp/granularity-slurm.XXXXXX)"
chmod 755 "$work" # munged, running as the munge user, must reach its folder inside
JOBS=()
ok=0
cleanup() {
    [ ${#JOBS[@]} -gt 0 ] && scancel "${JOBS[@]}" >/dev/null 2>&1
    slurm_stop
    if [ "$ok" = 1 ]; then
        rm -rf "$work"
    else
        echo "(files of the failed run kept in $work)" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "FAILED: $*" >&2
    exit 1
}

# --- the binaries (release; cargo rebuilds them only if the sources changed)
bin="$root/target/release"
if command -v cargo >/dev/null 2>&1; then
    cargo build --release --bins -q
fi
for b in empirical theory-sim; do
    [ -x "$bin/$b" ] || fail "$bin/$b missing (cargo build --release)"
done

# --- the cluster
export SLURM_LOG="$work/install.log"
if ! why="$(slurm_install 2>&1)"; then
    ok=1
    echo "SKIPPED: the Slurm test, because Slurm cannot be installed here: $why"
    exit 0
fi
# (in this shell, not a subshell: it records the daemons' pids and exports SLURM_CONF)
if ! slurm_start "$work/slurm" 2>"$work/start.err"; then
    ok=1
    echo "SKIPPED: the Slurm test, because the daemons could not be started within a minute:" \
        "$(tr '\n' ' ' <"$work/start.err")"
    exit 0
fi

# --- the comparison: every file under $1 (but the wall-clock records timings/ and timings.csv,
# which a merge does not combine, and checkpoints/) has the same bits
# under $2, wall-clock fields masked; $2 may hold shards/ and slurm/ besides.
files_of() {
    (cd "$1" && find . -type f \
        -not -path './timings/*' -not -path './timings.csv' -not -path './checkpoints/*' \
        -not -path './shards/*' -not -path './slurm/*' | sort)
}
timeless() {
    case "$1" in
    *.json) sed -E 's/("(seconds|images_per_sec)": )[-0-9.eE+]+/\1_/' "$1" ;;
    *epochs.csv) awk -F, -v OFS=, '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == "seconds" || $i == "images_per_sec") drop[i] = 1 }
        { s = ""; for (i = 1; i <= NF; i++) if (!(i in drop)) s = s (s == "" ? "" : OFS) $i; print s }' "$1" ;;
    *) cat "$1" ;;
    esac
}
same_bits() {
    local single="$1" merged="$2" what="$3" n=0 f
    diff <(files_of "$single") <(files_of "$merged") >&2 ||
        fail "$what: the merged folder does not hold the single run's files (diff above)"
    while read -r f; do
        cmp -s <(timeless "$single/$f") <(timeless "$merged/$f") ||
            fail "$what: $f differs between the single run and the merged shards"
        n=$((n + 1))
    done < <(files_of "$single")
    echo "$what: $n files of the merged shards equal the single-process run's" \
        "($(files_of "$single" | grep -c '\.svg$') figures, $(files_of "$single" | grep -c '^./cells/') cells)"
}

# $1: the shard folders under OUT/shards must be N, each with at least one cell
spread() {
    local out="$1" n="$2" what="$3" i
    for ((i = 1; i <= n; i++)); do
        [ -n "$(ls "$out/shards/$i-of-$n/cells" 2>/dev/null)" ] ||
            fail "$what: shard $i/$n saved no cell"
    done
}

# the three jobs' ids from a "prepare ... job A, shards ... job B, merge ... job C" line
job_ids() { grep -oE 'job [0-9]+' | awk '{print $2}'; }

finished() {
    local what="$1" j s
    shift
    slurm_wait 600 "$@" || fail "$what: the jobs did not finish in 10 minutes"
    for j in "$@"; do
        s="$(slurm_states "$j")"
        [ "$s" = "COMPLETED " ] || {
            tail -n 20 "$work"/*/slurm/logs/* >&2 2>/dev/null || true
            fail "$what: job $j ended ${s:-unknown}"
        }
    done
}

# --- a theory sweep: 12 runs (3 noise levels x 2 labelings x 2 seeds), 3 shards
THEORY=(--set 'seeds=[0, 1]' --set data.dim=32 --set data.patches=8 --set 'data.subclasses=[2, 2]'
    --set data.test_easy=200 --set data.test_hard=200 --set train.max_steps=120
    --set train.record_every=40 --set train.window=40 --set readout.probe_train=200
    --set readout.probe_steps=50 --set readout.finetune_steps=20)
SWEEP=(--param data.hard_noise=0.5,1,2)
"$bin/theory-sim" "${THEORY[@]}" --out "$work/theory-single" sweep "${SWEEP[@]}" >/dev/null 2>&1 ||
    fail "the single-process theory sweep failed"
"$bin/theory-sim" "${THEORY[@]}" --out "$work/theory-slurm" slurm "${SWEEP[@]}" --shards 3 \
    --partition test --time 0:10:00 --binary "$bin/theory-sim" --submit >"$work/theory-submit.out" 2>&1 ||
    { cat "$work/theory-submit.out" >&2; fail "theory-sim slurm --submit"; }
mapfile -t t_ids < <(grep '^submitted' "$work/theory-submit.out" | job_ids)
[ ${#t_ids[@]} = 3 ] || { cat "$work/theory-submit.out" >&2; fail "no job ids from theory-sim slurm --submit"; }
JOBS+=("${t_ids[@]}")
echo "theory sweep: submitted by theory-sim slurm --submit (prepare ${t_ids[0]}, array ${t_ids[1]} of 3 shards, merge ${t_ids[2]})"

# --- a tiny synthetic study: 2 designs x (baseline + 2 granularities) x 2 seeds, 2 shards
EMPIRICAL=(--set 'seeds=[0, 1]'
    --set 'data.synthetic={image_size = 16, patch_size = 4, subclasses = [2, 2], train_per_leaf = 16, test_easy_per_leaf = 6, test_hard_per_leaf = 6}'
    --set model.width=4 --set train.batch_size=16 --set train.pretrain_epochs=2
    --set train.finetune_epochs=1 --set 'train.pretrain_lr={kind = "cosine", lr = 0.05}'
    --set train.probe.epochs=2
    --set 'granularity=[{name = "fine", labels = {kind = "level", level = 1}}, {name = "km", labels = {kind = "kmeans_within", k = 2}}]'
    --set 'hard.rare_subclass={rare_per_leaf = 4, granularities = ["fine"]}')
CONFIG="$root/experiments/empirical/synthetic.toml"
"$bin/empirical" "${EMPIRICAL[@]}" study "$CONFIG" --out "$work/empirical-single" >/dev/null 2>&1 ||
    fail "the single-process empirical study failed"
"$bin/empirical" "${EMPIRICAL[@]}" slurm "$CONFIG" --out "$work/empirical-slurm" --shards 2 \
    --partition test --time 0:10:00 >"$work/empirical-slurm.out" 2>&1 ||
    { cat "$work/empirical-slurm.out" >&2; fail "empirical slurm"; }
submit="$work/empirical-slurm/slurm/submit.sh"
[ -x "$submit" ] || fail "empirical slurm wrote no $submit"
"$submit" >"$work/empirical-submit.out" 2>&1 || { cat "$work/empirical-submit.out" >&2; fail "$submit"; }
mapfile -t e_ids < <(job_ids <"$work/empirical-submit.out")
[ ${#e_ids[@]} = 3 ] || { cat "$work/empirical-submit.out" >&2; fail "no job ids from $submit"; }
JOBS+=("${e_ids[@]}")
echo "empirical study: submitted by the generated submit.sh (prepare ${e_ids[0]}, array ${e_ids[1]} of 2 shards, merge ${e_ids[2]})"

# --- wait, then compare
finished "theory sweep" "${t_ids[@]}"
finished "empirical study" "${e_ids[@]}"
spread "$work/theory-slurm" 3 "theory sweep"
spread "$work/empirical-slurm" 2 "empirical study"
same_bits "$work/theory-single" "$work/theory-slurm" "theory sweep"
same_bits "$work/empirical-single" "$work/empirical-slurm" "empirical study"
ok=1
echo "Slurm test passed in $((SECONDS - start)) s (jobs ${JOBS[*]}, all COMPLETED)"
