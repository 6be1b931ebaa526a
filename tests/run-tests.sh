#!/usr/bin/env bash
# Runs every test program under $BUILD/tests (each a cmocka group printing
# TAP), each with a timeout, and prints one line per program and a summary.
# A skipped test is listed with its reason; a program that dies without
# reporting all its tests counts the missing ones as failed.
#   tests/run-tests.sh [NAME...]      (NAME: program name without .t)
set -u
BUILD=${BUILD:-build}
TIMEOUT=${TEST_TIMEOUT:-300}
export SAMEPAGE_BUILD=$(cd "$BUILD" && pwd)
export SAMEPAGE_SRC=$(cd "$(dirname "$0")/.." && pwd)
export CMOCKA_MESSAGE_OUTPUT=TAP

if [ $# -gt 0 ]; then
	progs=()
	for n in "$@"; do progs+=("$BUILD/tests/${n%.t}.t"); done
else
	progs=("$BUILD"/tests/*.t)
fi

passed=0 failed=0 skipped=0
skips=() fails=()
outdir="$BUILD/test-output"
mkdir -p "$outdir"

for prog in "${progs[@]}"; do
	name=$(basename "$prog" .t)
	log="$outdir/$name.log"
	start=$(date +%s%N)
	timeout --kill-after=10 "$TIMEOUT" "$prog" >"$log" 2>&1
	rc=$?
	secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
	# Count TAP results: "ok N - x", "not ok N # SKIP x", "not ok N - x".
	plan=$(sed -n 's/^1\.\.\([0-9]\+\)$/\1/p' "$log" | head -1)
	p=0 f=0 s=0 reason=""
	while IFS= read -r line; do
		case "$line" in
		"# SKIP-REASON: "*) reason=${line#"# SKIP-REASON: "} ;;
		"ok "*) p=$((p + 1)) ;;
		"not ok "*"# SKIP"*)
			s=$((s + 1))
			skips+=("$name: ${line##*# SKIP } -- ${reason:-no reason given}")
			reason="" ;;
		"not ok "[0-9]*)
			f=$((f + 1))
			fails+=("$name: ${line#not ok }") ;;
		esac
	done <"$log"
	total=$((p + f + s))
	if [ -n "$plan" ] && [ "$total" -lt "$plan" ]; then
		missing=$((plan - total))
		f=$((f + missing))
		fails+=("$name: $missing test(s) never reported (exit code $rc)")
	elif [ -z "$plan" ]; then
		f=$((f + 1))
		fails+=("$name: no test plan printed (exit code $rc)")
	fi
	[ $rc -eq 124 ] && fails+=("$name: timed out after ${TIMEOUT}s")
	# cmocka exits with the number of failed tests: anything else (a
	# sanitizer's report, a crash after the last test) is a failure too.
	if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -ne $f ]; then
		f=$((f + 1))
		fails+=("$name: exit code $rc after $p passed, $f failed tests (sanitizer report or crash? see $log)")
	fi
	if [ $f -gt 0 ]; then
		verdict=FAIL
	elif [ $s -gt 0 ]; then
		verdict=PASS+SKIP
	else
		verdict=PASS
	fi
	printf '%-10s %-28s %3d passed %3d failed %3d skipped  %6ss\n' "$verdict" "$name" $p $f $s "$secs"
	if [ $f -gt 0 ]; then
		sed 's/^/    | /' "$log" | tail -40
	fi
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done

echo
if [ ${#skips[@]} -gt 0 ]; then
	echo "Skipped (the machine lacks what they need):"
	printf '  SKIP %s\n' "${skips[@]}"
fi
if [ ${#fails[@]} -gt 0 ]; then
	echo "Failed:"
	printf '  FAIL %s\n' "${fails[@]}"
fi
echo "logs: $outdir"
echo "$skipped skipped"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
