# Helpers for the io tests (source after tests/lib.sh): run one command list
# through qemu-io (the oracle) and `topcow io` on identical copies of an image,
# then require the same stdout, stderr and exit status after normalising what
# legitimately differs, the same image contents, and a clean qemu-img check.
#
#   io_compare IMG [QEMU-IO OPTIONS AND -c COMMANDS...]
#
# IMG is a file name in $SCRATCH ("-" for none).  Both tools run in their own
# copy of $SCRATCH/IMG, in the copy's directory, so file names in the output
# match.  Environment knobs (all optional):
#   IO_NAME       label for failure messages
#   IO_EXTRA      more files from $SCRATCH to copy beside IMG (backing files)
#   IO_STDIN      file whose lines are fed on stdin
#   IO_FMT        image format for qemu-img compare/check (default: from the
#                 file name: *.raw is raw, anything else qcow2)
#   IO_OPEN_FAIL  1 if the image is expected not to open (otherwise a failed
#                 open is an error of the test itself, e.g. a missing backing file)
#   IO_MAP_CHECK  1 to also require the same allocation state in qemu-img map
#                 (zero flags vs data, host clusters kept or freed) -- stricter
#                 than what qemu-io itself can observe
#   IO_NO_COMPARE 1 to skip qemu-img compare: QEMU 7.2 resolves a relative
#                 external data file against its working directory, so two
#                 copies with their own data files cannot be compared

# Normalise: the timing line to the shape QEMU's iotests use (so the shape
# itself is checked), the -C line's time and rates, the error-reporter prefix,
# qemu-io's prompt (topcow prompts only on a terminal), and the library's
# reason after "can't open device NAME:".
io_filter() {
    local time='([0-9]+:[0-9]{2}:[0-9]{2}\.[0-9]{2}|[0-9]{2}\.[0-9]{2} sec)'
    local rate='[0-9.]+ (bytes|[KMGTPE]iB)\/sec and [0-9]+\.[0-9]{4} ops\/sec'
    local csv='[0-9]+:[0-9]{2}:[0-9]{2}\.[0-9]{2},[0-9]+\.[0-9]{3},[0-9]+\.[0-9]{3}'
    sed -E \
        -e "s/[0-9]+ ops; $time \($rate\)\$/X ops; XX:XX:XX.X (XXX YYY\/sec and XXX ops\/sec)/" \
        -e "s/^([0-9]+,[0-9]+),$csv\$/\\1,TIME,RATE,RATE/" \
        -e 's/^qemu-io: /topcow: /' \
        -e 's/qemu-io> //g' \
        -e "s/(can't open device [^:]*):.*/\\1: REASON/"
}

# Reduce qemu-img map --output=json to what the two images must share: runs
# of equal depth, presence, zero/data state and whether a host cluster is
# kept (not where).  A data run's "zero" only reports holes in the host file,
# which depend on how the writer laid out partial clusters: it is dropped,
# and runs that become equal are merged.
io_map_filter() {
    awk '
    function field(name,   m) {
        if (match($0, "\"" name "\": [a-z0-9]+"))
            return substr($0, RSTART + length(name) + 4, RLENGTH - length(name) - 4)
        return "-"
    }
    /"start"/ {
        start = field("start"); len = field("length"); data = field("data")
        zero = data == "true" ? "-" : field("zero")
        key = "depth " field("depth") " present " field("present") " zero " zero \
              " data " data " host " (field("offset") == "-" ? "no" : "yes")
        if (n && key == prev && start == end) {
            end += len
            next
        }
        if (n)
            print from, end - from, prev
        n = 1; prev = key; from = start; end = start + len
    }
    END { if (n) print from, end - from, prev }'
}

# Run one tool in directory $1 ("q" or "t"); remaining args: the command line.
io_run_in() {
    local dir=$1 rc=0
    shift
    (cd "$SCRATCH/$dir" && "$@" <"${IO_STDIN:-/dev/null}" >out 2>err) || rc=$?
    echo "exit status $rc" >>"$SCRATCH/$dir/out"
}

io_compare() {
    local img=$1 name=${IO_NAME:-io_compare} d f fmt
    shift
    for d in q t; do
        rm -rf "${SCRATCH:?}/$d"
        mkdir "$SCRATCH/$d"
        for f in ${IO_EXTRA:-}; do
            cp "$SCRATCH/$f" "$SCRATCH/$d/"
        done
        [ "$img" = - ] || cp "$SCRATCH/$img" "$SCRATCH/$d/"
    done
    local imgarg=()
    [ "$img" = - ] || imgarg=("$img")
    io_run_in q qemu-io "$@" "${imgarg[@]}"
    io_run_in t "$TOPCOW" io "$@" "${imgarg[@]}"

    if [ "${IO_OPEN_FAIL:-0}" != 1 ] && grep -q "can't open device" "$SCRATCH/q/err"; then
        cat "$SCRATCH/q/err" >&2
        fail "$name: qemu-io could not open the image (broken test setup)"
    fi
    for f in out err; do
        if ! diff -u <(io_filter <"$SCRATCH/q/$f") <(io_filter <"$SCRATCH/t/$f") \
            >"$SCRATCH/diff"; then
            cat "$SCRATCH/diff" >&2
            fail "$name: std$f differs from qemu-io's (--- qemu-io, +++ topcow)"
        fi
    done

    [ "$img" = - ] && return 0
    [ -e "$SCRATCH/q/$img" ] || return 0
    fmt=${IO_FMT:-qcow2}
    case $img in *.raw) fmt=${IO_FMT:-raw} ;; esac
    if [ "${IO_NO_COMPARE:-0}" != 1 ] &&
        ! out=$(qemu-img compare -f "$fmt" -F "$fmt" "$SCRATCH/q/$img" "$SCRATCH/t/$img" 2>&1)
    then
        echo "$out" >&2
        fail "$name: image contents differ from qemu-io's"
    fi
    if [ "$fmt" = qcow2 ]; then
        (cd "$SCRATCH/t" && qemu_check_clean -f qcow2 "$img")
    fi
    if [ "$fmt" = qcow2 ] && [ "${IO_MAP_CHECK:-0}" = 1 ]; then
        for d in q t; do
            (cd "$SCRATCH/$d" && qemu-img map -f qcow2 --output=json "$img") |
                io_map_filter >"$SCRATCH/$d/map"
        done
        if ! diff -u "$SCRATCH/q/map" "$SCRATCH/t/map" >"$SCRATCH/diff"; then
            cat "$SCRATCH/diff" >&2
            fail "$name: qemu-img map differs from that of qemu-io's image"
        fi
    fi
}

# gen_cmds SEED N SIZE CLUSTER: a reproducible random workload of N commands
# over an image of SIZE bytes, half of them cluster-aligned; fills IO_CMDS
# with "-c CMD" pairs and ends with map and a whole-image alloc.
gen_cmds() {
    local seed=$1 n=$2 size=$3 cl=$4 i off len pat
    RANDOM=$seed
    IO_CMDS=()
    for ((i = 0; i < n; i++)); do
        if ((RANDOM % 2)); then
            off=$(((RANDOM * 32768 + RANDOM) % (size / cl) * cl))
            len=$(((RANDOM % 4 + 1) * cl))
        else
            off=$(((RANDOM * 32768 + RANDOM) % size))
            len=$((RANDOM % (3 * cl) + 1))
        fi
        ((off + len <= size)) || len=$((size - off))
        pat=$((RANDOM % 256))
        case $((RANDOM % 10)) in
        0 | 1 | 2) IO_CMDS+=(-c "write -P $pat $off $len") ;;
        3) IO_CMDS+=(-c "write -z $off $len") ;;
        4) IO_CMDS+=(-c "write -z -u $off $len") ;;
        5) IO_CMDS+=(-c "discard $off $len") ;;
        6) IO_CMDS+=(-c "read -P $pat $off $len") ;;
        7) IO_CMDS+=(-c "alloc $off $len") ;;
        8) IO_CMDS+=(-c "writev -P $pat $off $len $((RANDOM % 4096))") ;;
        9) IO_CMDS+=(-c "read -q -P $pat $off $len") ;;
        esac
    done
    IO_CMDS+=(-c map -c "alloc 0 $size")
}
