#!/usr/bin/env bash
# netns_mpirun.sh -- run a 2-rank MPI job (Open MPI, TCP) on two "hosts" that
# are two sets of Linux namespaces on this machine, joined by a veth pair.
#
#   tests/netns_mpirun.sh [--timeout S] [-x NAME[=VALUE]]... -- COMMAND ARGS...
#
# COMMAND ARGS... is the MPI program: rank 0 runs on host "hallu-a", rank 1 on
# host "hallu-b".  Exit status: the job's (mpirun's: the first failing rank's
# code, 128+N when a rank died of signal N); 124 when --timeout S ran out
# (default 300, 0 = no limit); 77 when this machine cannot make the namespaces
# (not root / no CAP_NET_ADMIN, no veth, no UTS/PID namespaces) or has no
# mpirun, for ctest's SKIP_RETURN_CODE; 2 on a usage error.  On stderr: the
# host, network namespace and veth address of each rank, and the bytes that
# crossed the veth.  -x NAME[=VALUE] is mpirun's -x (see "environment" below).
# Standard input is /dev/null.
#
# How
#   * Two network namespaces, hallu-a-$$ and hallu-b-$$ ("ip netns add"), and a
#     veth pair created directly inside them ("ip -n A link add hallu0 type
#     veth peer name hallu0 netns B"): 10.231.77.1/24 in A, 10.231.77.2/24 in
#     B; lo and hallu0 up in both.  The veth never exists in the root
#     namespace, so neither its names nor its subnet can clash with the
#     machine's, or with another run of this script at the same time.
#   * Each host is "unshare --uts --pid --fork --kill-child --mount-proc" run
#     inside its network namespace: its own host name (hallu-a / hallu-b, so
#     uname(2) differs as on two machines), its own PID namespace and /proc.
#     A small /bin/sh is PID 1 of each host and runs the host's one program
#     (mpirun on A, orted on B) as its child.  When that program ends, PID 1
#     ends and the kernel kills whatever is left on that host (ranks, helpers)
#     and reaps it: no orphan survives, none is left to the machine's init as
#     a zombie (Open MPI's orted exits without reaping a rank it killed).  B's
#     PID namespace is nested in A's (B is started from A by mpirun), so when
#     host A goes, host B goes too.  --kill-child: a host's PID 1 is killed
#     if the unshare above it dies; the launch on A is also under "setpriv
#     --pdeathsig KILL" (when available), so that if this script is SIGKILLed
#     the whole job dies with it rather than run on until --timeout.
#   * mpirun runs on host A with --host 10.231.77.1:1,10.231.77.2:1.  IP
#     addresses as host names: Open MPI accepts them, finds that 10.231.77.1
#     is one of its own interface addresses (the local node, renamed hallu-a
#     from gethostname) and that 10.231.77.2 is a remote node.  Nothing has to
#     resolve a host name: no /etc/hosts entry, no DNS lookup.
#   * The remote node is started by the rsh launcher with our own agent in
#     place of ssh (--mca plm rsh --mca plm_rsh_agent WORK/agent).  Open MPI
#     runs "agent 10.231.77.2 WORDS...", WORDS being the orted command line
#     with shell quoting, as it would run "ssh 10.231.77.2 WORDS...".  The
#     agent enters host B and runs /bin/sh -c "WORDS..." (ssh's semantics)
#     with a clean environment: env -i keeping only PATH HOME USER LOGNAME
#     SHELL LANG LC_ALL TMPDIR, as a login on another machine would.  No
#     OMPI_MCA_* variable has to reach B: the rsh launcher puts every MCA
#     parameter (command line and OMPI_MCA_* environment) on the orted
#     command line.
#   * Environment: rank 0 inherits this script's environment (it is mpirun's
#     child), rank 1 gets orted's clean one plus what mpirun forwards (its
#     OMPI_* variables and -x ones).  As on a real cluster, a variable every
#     rank needs must be passed with -x NAME or -x NAME=VALUE.
#   * mpirun's options, and why:
#       --mca plm rsh               the rsh launcher, whatever batch system
#                                   this runs under (SLURM_*, PBS_*, ...
#                                   variables are also removed from mpirun's
#                                   environment so that only --host counts);
#       --mca plm_rsh_agent AGENT   our "ssh" into host B (above);
#       --mca pml ob1               the BTL-based PML: a UCX PML would choose
#                                   its own transports, shared memory among
#                                   them (both "hosts" share one kernel);
#       --mca btl tcp,self          no vader (shared memory) BTL: the ranks
#                                   talk over TCP only; self is a rank's
#                                   messages to itself;
#       --mca btl_tcp_if_include 10.231.77.0/24
#       --mca oob_tcp_if_include 10.231.77.0/24
#                                   MPI traffic (btl) and the runtime's own
#                                   out-of-band channel (oob: orted <-> mpirun,
#                                   process wire-up) use the veth and nothing
#                                   else (not lo);
#       --mca orte_tmpdir_base WORK session directories (one per host name)
#                                   in this run's private work folder, removed
#                                   at the end whatever happened;
#       --bind-to none              each host believes it has all the CPUs to
#                                   itself and would bind its rank to core 0:
#                                   both ranks on one core otherwise;
#       --oversubscribe --allow-run-as-root  small machines; we are root.
#   * A rank that fails (exit status not 0, killed, exit without
#     MPI_Finalize) ends the job, here in about 3 s: Open MPI's own grace
#     between SIGTERM and SIGKILL (odls_base_sigkill_timeout, 1 s, on each
#     host in turn).  OMPI_MCA_odls_base_sigkill_timeout=0 in the environment
#     makes it immediate.
#   * Each rank is started through WORK/rank, which prints to stderr the host
#     name, network namespace and veth address it sees, then execs COMMAND.
#   * Cleanup (trap on EXIT, INT, TERM, HUP): mpirun is sent SIGTERM and given
#     5 s, every process still in either network namespace ("ip netns pids")
#     gets SIGKILL, the namespaces are deleted (the veth with them), the work
#     folder is removed.  Namespaces of a run that could not clean up
#     (hallu-[ab]-PID, PID gone) are removed by the next run.
#   * Shared between the hosts: the file system (like hosts with a shared NFS
#     home; /tmp included) and the machine's CPUs and memory.
set -euo pipefail

prog=netns_mpirun
ip_a=10.231.77.1
ip_b=10.231.77.2
subnet=10.231.77.0/24
host_a=hallu-a
host_b=hallu-b
veth=hallu0
ns_a=hallu-a-$$
ns_b=hallu-b-$$
# What makes a network namespace into a host (see above).
host_ns=(unshare --uts --pid --fork --kill-child --mount-proc --)

usage() {
    echo "usage: $0 [--timeout S] [-x NAME[=VALUE]]... -- COMMAND ARGS..." >&2
    exit 2
}
skip() {
    echo "$prog: SKIP: $*" >&2
    exit 77
}

timeout_s=300
xopts=()
while (($#)); do
    case $1 in
        --timeout) (($# >= 2)) || usage; timeout_s=$2; shift 2 ;;
        --timeout=*) timeout_s=${1#*=}; shift ;;
        -x) (($# >= 2)) || usage; xopts+=(-x "$2"); shift 2 ;;
        --) shift; break ;;
        *) usage ;;
    esac
done
(($#)) || usage
[[ $timeout_s =~ ^[0-9]+$ ]] || usage

for tool in ip unshare mpirun timeout; do
    command -v "$tool" >/dev/null 2>&1 || skip "'$tool' not found"
done
pdeath=()
if setpriv --pdeathsig KILL true >/dev/null 2>&1; then
    pdeath=(setpriv --pdeathsig KILL)
fi

# SIGKILL (by PID) every process in network namespace $1, until none is left.
kill_ns_procs() {
    local ns=$1 i pids=
    for ((i = 0; i < 50; i++)); do
        pids=$(ip netns pids "$ns" 2>/dev/null) || return 0
        [[ -n $pids ]] || return 0
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.1
    done
    echo "$prog: warning: processes still in namespace $ns: ${pids//$'\n'/ }" >&2
}

# What earlier runs left when they were killed before they could clean up.
while read -r ns _; do
    if [[ $ns =~ ^hallu-[ab]-([0-9]+)$ ]] && [[ ! -e /proc/${BASH_REMATCH[1]} ]]; then
        echo "$prog: removing stale namespace $ns" >&2
        kill_ns_procs "$ns"
        ip netns del "$ns" 2>/dev/null || true
    fi
done < <(ip netns list 2>/dev/null || true)
# Open MPI splits plm_rsh_agent's value at spaces: no space in the work folder.
tmp=${TMPDIR:-/tmp}
[[ $tmp != *[[:space:]]* ]] || tmp=/tmp
for d in "$tmp"/hallu-netns.*.*; do
    if [[ -d $d && $d =~ /hallu-netns\.([0-9]+)\.[^/]*$ ]] && [[ ! -e /proc/${BASH_REMATCH[1]} ]]; then
        rm -rf "$d"
    fi
done

work=
job=
made_a=0
made_b=0
# shellcheck disable=SC2317 # (called by the EXIT trap)
cleanup() {
    local rc=$? i rx tx
    set +e
    trap '' INT TERM HUP
    if [[ -n $job ]] && kill -0 "$job" 2>/dev/null; then
        kill -TERM "$job" 2>/dev/null # timeout passes it on to mpirun
        for ((i = 0; i < 50; i++)); do
            kill -0 "$job" 2>/dev/null || break
            sleep 0.1
        done
    fi
    # made_*: "ip netns add" was tried; it may have failed half-way.
    ((made_a)) && ip netns pids "$ns_a" >/dev/null 2>&1 || made_a=0
    ((made_b)) && ip netns pids "$ns_b" >/dev/null 2>&1 || made_b=0
    if ((made_a && made_b)); then
        rx=$(ip netns exec "$ns_a" cat "/sys/class/net/$veth/statistics/rx_bytes" 2>/dev/null)
        tx=$(ip netns exec "$ns_a" cat "/sys/class/net/$veth/statistics/tx_bytes" 2>/dev/null)
        [[ -n $tx && -n $rx ]] &&
            echo "$prog: veth traffic: $host_a -> $host_b $tx bytes, $host_b -> $host_a $rx bytes" >&2
    fi
    if ((made_a)); then
        kill_ns_procs "$ns_a"
        ip netns del "$ns_a" 2>/dev/null || echo "$prog: warning: could not delete namespace $ns_a" >&2
    fi
    if ((made_b)); then
        kill_ns_procs "$ns_b"
        ip netns del "$ns_b" 2>/dev/null || echo "$prog: warning: could not delete namespace $ns_b" >&2
    fi
    [[ -n $job ]] && wait "$job" 2>/dev/null
    [[ -n $work ]] && rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "$prog: interrupted (SIGINT)" >&2; exit 130' INT
trap 'echo "$prog: terminated (SIGTERM)" >&2; exit 143' TERM
trap 'echo "$prog: hung up (SIGHUP)" >&2; exit 129' HUP

# The namespaces and the veth between them; any failure here is a SKIP.
made_a=1
err=$(ip netns add "$ns_a" 2>&1) ||
    skip "cannot create a network namespace (needs root / CAP_NET_ADMIN): $err"
made_b=1
err=$(ip netns add "$ns_b" 2>&1) || skip "cannot create a network namespace: $err"
err=$(ip -n "$ns_a" link add "$veth" type veth peer name "$veth" netns "$ns_b" 2>&1) ||
    skip "cannot create a veth pair: $err"
err=$({ ip -n "$ns_a" addr add "$ip_a/24" dev "$veth" &&
    ip -n "$ns_b" addr add "$ip_b/24" dev "$veth" &&
    ip -n "$ns_a" link set lo up && ip -n "$ns_a" link set "$veth" up &&
    ip -n "$ns_b" link set lo up && ip -n "$ns_b" link set "$veth" up; } 2>&1) ||
    skip "cannot configure the veth pair: $err"
err=$(ip netns exec "$ns_a" "${host_ns[@]}" /bin/sh -c "hostname $host_a" 2>&1) ||
    skip "cannot create UTS / PID / mount namespaces: $err"

work=$(mktemp -d "$tmp/hallu-netns.$$.XXXXXX")

# The rsh agent: Open MPI runs "agent HOST WORDS..." as it would "ssh HOST WORDS...".
cat >"$work/agent" <<EOF
#!/bin/bash
host=\$1
shift
case \$host in
    $ip_b | $host_b) ;;
    *) echo "$prog agent: unknown host '\$host'" >&2; exit 255 ;;
esac
keep=()
for v in PATH HOME USER LOGNAME SHELL LANG LC_ALL TMPDIR; do
    [[ -n \${!v+x} ]] && keep+=("\$v=\${!v}")
done
exec ip netns exec $ns_b ${host_ns[*]} env -i "\${keep[@]}" \\
    /bin/sh -c 'hostname "\$0" && /bin/sh -c "\$1"; exit \$?' $host_b "\$*"
EOF

# Each rank says where it is, then becomes COMMAND.
cat >"$work/rank" <<EOF
#!/bin/bash
addr=
read -r _ _ _ addr _ < <(ip -o -4 addr show dev $veth 2>/dev/null) || true
echo "$prog: rank \${OMPI_COMM_WORLD_RANK:-?} on host \$(uname -n)" \\
    "(netns \$(readlink /proc/self/ns/net), $veth \${addr:-none}, pid \$\$ on that host)" >&2
exec "\$@"
EOF
chmod +x "$work/agent" "$work/rank"

# shellcheck disable=SC2054 # (commas inside words, on purpose)
mpirun_args=(
    --allow-run-as-root --oversubscribe --bind-to none
    -np 2 --host "$ip_a:1,$ip_b:1"
    --mca plm rsh --mca plm_rsh_agent "$work/agent"
    --mca pml ob1 --mca btl tcp,self
    --mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet"
    --mca orte_tmpdir_base "$work"
    "${xopts[@]}"
    "$work/rank" "$@"
)
# Batch systems' variables would make mpirun use their allocation.
unset_env=()
for v in $(compgen -e); do
    case $v in
        SLURM_* | PBS_* | PE_HOSTFILE | JOB_ID | LSB_* | LSF_* | FLUX_* | OMPI_MCA_plm* | OMPI_MCA_ras*)
            unset_env+=(-u "$v") ;;
    esac
done

echo "$prog: host $host_a = netns $ns_a ($ip_a), host $host_b = netns $ns_b ($ip_b), veth $veth" >&2
shown=
for w in mpirun "${mpirun_args[@]}"; do
    [[ $w =~ ^[][A-Za-z0-9_./:,=+@%^-]+$ ]] || w=$(printf '%q' "$w")
    shown+=" $w"
done
echo "$prog:$shown" >&2

# shellcheck disable=SC2016 # ($0, $@ are the inner shell's)
"${pdeath[@]}" timeout -k 10 "$timeout_s" "${pdeath[@]}" env "${unset_env[@]}" \
    ip netns exec "$ns_a" "${host_ns[@]}" \
    /bin/sh -c 'hostname "$0" && "$@"; exit $?' "$host_a" mpirun "${mpirun_args[@]}" &
job=$!
if wait "$job"; then status=0; else status=$?; fi
job=
((status != 124)) || echo "$prog: timed out after $timeout_s s" >&2
echo "$prog: job exit status $status" >&2
exit "$status"
