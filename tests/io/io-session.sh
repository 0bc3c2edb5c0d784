#!/bin/bash
# Sessions behave as qemu-io's: open/close/reopen sequences and their errors,
# the main options (-f -r -U -n -t -d), commands read from stdin (blank
# lines, repeated spaces, quit), quit ending the -c list, exit statuses, and
# many commands in one process.
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/io/io-compare.sh"
require qemu-img qemu-io
export IO_MAP_CHECK=1

qemu-img create -q -f qcow2 "$SCRATCH/a.qcow2" 4M
qemu-img create -q -f raw "$SCRATCH/r.raw" 1M

IO_EXTRA="a.qcow2 r.raw" IO_OPEN_FAIL=1 IO_NAME=open-close io_compare - \
    -c "close" -c "read 0 1" -c "open -r a.qcow2" -c "write 0 1" -c "read 0 1" -c "close" \
    -c "open a.qcow2" -c "write -P 7 0 1" -c "open a.qcow2" -c "close" -c "open -U a.qcow2" \
    -c "open -U -r a.qcow2" -c "read -P 7 0 1" -c "close" -c "open -o driver=qcow2 a.qcow2" \
    -c "info" -c "close" -c "open -o driver=raw a.qcow2" -c "info" -c "close" \
    -c "open /nonexistent" -c "open -t bogus a.qcow2" -c "open -d bogus a.qcow2" \
    -c "open -i bogus a.qcow2" -c "open -t none -d unmap a.qcow2" -c "close" \
    -c "open -n -r a.qcow2" -c "close" -c "open -Z a.qcow2" -c "open" -c "open a.qcow2 extra" \
    -c "open -i native -t none -k a.qcow2" -c "reopen -r" -c "write 0 1" -c "reopen -w" \
    -c "write -P 8 0 1" -c "reopen" -c "reopen -c unsafe" -c "write 1 1" -c "reopen -r -w" \
    -c "reopen -c bogus" -c "reopen x" -c "close" -c "reopen" -c "o -d ignore a.qcow2" \
    -c "write -P 9 0 64k" -c "discard 0 64k" -c "read -P 9 0 64k" -c "c" \
    -c "open -o driver=raw r.raw" -c "write -P 4 0 1" -c "c" -c "o -r a.qcow2" -c "read -P 8 0 1"
IO_EXTRA=r.raw IO_NAME=open-close-raw io_compare r.raw -f raw -c "close" -c "open -r r.raw" \
    -c "read -P 4 0 1"

# Main options.
for opts in "-r" "-f qcow2" "-f qcow2 -r" "-U -r" "-n" "-t none" "-t directsync" \
    "-t writethrough" "-t writeback" "-t unsafe" "-t off" "-d ignore" "-d off" "-d on" \
    "-d unmap" "-i threads" "-k -n"; do
    # shellcheck disable=SC2086
    IO_NAME="main $opts" io_compare a.qcow2 $opts \
        -c "read 0 1" -c "write -P 3 64k 64k" -c "discard 64k 64k" -c "read -P 0 64k 64k" -c map
done
for opts in "-U" "-f raw" "-t bogus" "-d bogus" "-i bogus" "-f bogus"; do
    # shellcheck disable=SC2086
    IO_OPEN_FAIL=1 IO_NAME="main $opts" io_compare a.qcow2 $opts -c "read 0 1"
done
IO_OPEN_FAIL=1 IO_NAME="main missing" io_compare - -c "read 0 1" /nonexistent
IO_NAME="main raw" io_compare r.raw -f raw -c info

# quit ends the command list; the status reflects what ran before it.
IO_NAME=quit io_compare a.qcow2 -c "read 0 1" -c quit -c "read 0 1"
IO_NAME=quit-after-failure io_compare a.qcow2 -c "read 0 5M" -c q -c "read 0 1"

# Commands from stdin: blank lines, spaces, unknown commands, a tab (not a
# separator), quit and the lines after it.
printf '%s\n' "read 0 1" "" "   " "foo" "read  0   1 " "$(printf 'alloc\t0')" "write -P 1 0 1" \
    "read -P 1 0 1" "read -P 2 0 1" "info" "quit" "read 0 1" >"$SCRATCH/cmds"
IO_STDIN=$SCRATCH/cmds IO_NAME=stdin io_compare a.qcow2
printf 'write -P 5 0 1\nread -P 5 0 1' >"$SCRATCH/cmds-noeol"
IO_STDIN=$SCRATCH/cmds-noeol IO_NAME=stdin-no-eol io_compare a.qcow2
IO_NAME=stdin-empty io_compare a.qcow2
printf 'open a.qcow2\nwrite -P 6 1M 1\nclose\nopen -r a.qcow2\nread -P 6 1M 1\n' >"$SCRATCH/cmds2"
IO_EXTRA=a.qcow2 IO_STDIN=$SCRATCH/cmds2 IO_NAME=stdin-open io_compare -
# -c wins over stdin.
IO_STDIN=$SCRATCH/cmds IO_NAME=stdin-ignored io_compare a.qcow2 -c "read 0 2"

# A probed raw image gets a warning (its first line is qemu-io's).
qemu-io -c "read 0 1" "$SCRATCH/r.raw" 2>&1 >/dev/null | head -n 1 >"$SCRATCH/warn.q"
"$TOPCOW" io -c "read 0 1" "$SCRATCH/r.raw" 2>&1 >/dev/null | head -n 1 >"$SCRATCH/warn.t"
grep -q "probing guessed raw" "$SCRATCH/warn.t" || fail "no probing warning"
cmp -s "$SCRATCH/warn.q" "$SCRATCH/warn.t" || fail "probing warning differs"

# Two writers never share an image, whichever tool holds it; -U -r still
# reads.  The holder sleeps in a command until it is killed.
for holder in qemu-io "$TOPCOW io"; do
    # shellcheck disable=SC2086
    start_holder() { $holder -c "sleep 600000" "$SCRATCH/a.qcow2" >/dev/null 2>&1 & pid=$!; }
    start_holder
    for ((i = 0; i < 300; i++)); do
        qemu-img info "$SCRATCH/a.qcow2" >/dev/null 2>&1 || break
        # The probe's own shared lock makes the holder's open fail when the
        # two meet ("Failed to get write lock"): start the holder again.
        kill -0 "$pid" 2>/dev/null || { wait "$pid" || true; start_holder; }
        sleep 0.1
    done
    [ "$i" -lt 300 ] || fail "lock holder ($holder) never took the image lock"
    must_fail "$TOPCOW" io -c "read 0 1" "$SCRATCH/a.qcow2"
    echo "$ERR" | grep -q "^topcow: can't open device" || fail "second open ($holder): $ERR"
    ok "$TOPCOW" io -r -U -c "read 0 1" "$SCRATCH/a.qcow2"
    kill "$pid"
    wait "$pid" || true
done

# Many commands in one process, as test suites send them.
cmds=()
for ((i = 0; i < 2000; i++)); do
    cmds+=(-c "write -P $((i % 256)) $((i * 4096 % (4 << 20))) 4096")
done
for ((i = 0; i < 1000; i++)); do
    cmds+=(-c "read -q -P $(((i + 1000) % 256)) $(((i + 1000) * 4096 % (4 << 20))) 4096")
done
IO_NAME=many io_compare a.qcow2 "${cmds[@]}"

# Commands that are refused with a clear message, and the exit status 1.
for c in "write -c 512 64k" "truncate 1M" "read -b 0 512" "write -b 0 512"; do
    must_fail "$TOPCOW" io -c "$c" "$SCRATCH/a.qcow2"
done
must_fail "$TOPCOW" io -s -c "read 0 1" "$SCRATCH/a.qcow2"
must_fail "$TOPCOW" io -C -c "read 0 1" "$SCRATCH/a.qcow2"
ok "$TOPCOW" io --help
ok "$TOPCOW" io -c help
