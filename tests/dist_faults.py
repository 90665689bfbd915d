#!/usr/bin/env python3
"""Data-parallel faults (label mpi), each bounded in time so that a hang fails:

  kill9      kill -9 of rank 1 mid-epoch: within 60 s no rank is left and the
             job exits non-zero;
  sigint     SIGINT to rank 1 mid-epoch: every rank stops after the same step,
             one checkpoint; --resume at -np 2 ends bit for bit like an
             uninterrupted -np 2 run (metrics and every checkpoint tensor);
  uneven     datasets whose size divides neither by the ranks nor the batch
             (2 and 3 ranks) finish; a batch that does not divide by the ranks
             is a named error on every rank;
  missing    rank 1's data does not exist (as on a host without it): every rank
             exits non-zero within 60 s with rank 1's message;
  isolated   ranks on --device cpu-isolated (the communicator stages through
             host copies) give the cpu ranks' result bit for bit.

usage: dist_faults.py HALLU WORKDIR [SCENARIO ...]
"""
import json, os, shutil, signal, subprocess, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from safetensors_io import load_file  # noqa: E402

MPI = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
BASE = ["train", "--no-knn-floor", "--knn-k", "10", "--workers", "1", "--threads", "1", "--log-every", "1",
        "--seed", "4"]
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        failures.append(msg)


def mpirun(np_, hallu, args, out, log, timeout=300, wait=True):
    cmd = MPI + ["-np", str(np_), hallu] + BASE + args + ["--out", out]
    f = open(log, "w")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    if not wait:
        return p
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        return "timeout"


def ranks_of(mpirun_pid):
    """{rank: pid} of the processes mpirun started (its children, by OMPI_COMM_WORLD_RANK)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open("/proc/%s/stat" % pid).read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != mpirun_pid:
                continue
            env = open("/proc/%s/environ" % pid, "rb").read().split(b"\0")
        except OSError:
            continue
        for e in env:
            if e.startswith(b"OMPI_COMM_WORLD_RANK="):
                out[int(e.split(b"=")[1])] = int(pid)
    return out


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_step(run, step, timeout=240):
    t0 = time.time()
    path = os.path.join(run, "metrics.jsonl")
    while time.time() - t0 < timeout:
        if os.path.exists(path):
            steps = [json.loads(l).get("step", 0) for l in open(path) if l.strip()]
            if steps and max(steps) >= step:
                return True
        time.sleep(0.1)
    return False


def load_st(path):
    """Each tensor's bytes (bit-for-bit comparisons)."""
    return {k: v.numpy().tobytes() for k, v in load_file(path).items()}


def losses(run):
    return [(d["step"], d["loss"]) for d in map(json.loads, open(os.path.join(run, "metrics.jsonl"))) if "loss" in d]


def scenario_kill9(hallu, work):
    out = os.path.join(work, "kill9")
    p = mpirun(2, hallu, ["--data", "synthetic:2000", "--batch-size", "32", "--epochs", "1"], out, out + ".log",
               wait=False)
    check(wait_step(out, 2), "kill9: the run reached step 2")
    ranks = ranks_of(p.pid)
    check(sorted(ranks) == [0, 1], "kill9: found both ranks %s" % ranks)
    t0 = time.time()
    os.kill(ranks[1], signal.SIGKILL)
    try:
        rc = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        rc = "still running after 60 s"
    while time.time() - t0 < 60 and any(alive(pid) for pid in ranks.values()):
        time.sleep(0.1)
    took = time.time() - t0
    left = [r for r, pid in ranks.items() if alive(pid)]
    check(rc != 0 and rc != "still running after 60 s" and not left,
          "kill9: %.1f s after kill -9 of rank 1 no rank is left (exit %s, ranks left %s)" % (took, rc, left))


def scenario_sigint(hallu, work):
    args = ["--data", "synthetic:320", "--batch-size", "32", "--epochs", "2", "--method", "mocov2",
            "--queue-size", "320"]
    full, cut = os.path.join(work, "sigint-full"), os.path.join(work, "sigint-cut")
    rc = mpirun(2, hallu, args, full, full + ".log")
    check(rc == 0, "sigint: the uninterrupted -np 2 run finished (exit %s)" % rc)
    p = mpirun(2, hallu, args, cut, cut + ".log", wait=False)
    check(wait_step(cut, 4), "sigint: the run to interrupt reached step 4")
    ranks = ranks_of(p.pid)
    os.kill(ranks[1], signal.SIGINT)
    try:
        rc = p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        rc = "timeout"
    log = open(cut + ".log").read()
    saved = sorted(f for f in os.listdir(cut) if f.endswith(".hlu"))
    check(rc == 130 and saved == ["checkpoint.hlu"] and "interrupted at step" in log,
          "sigint: SIGINT to rank 1 -> exit %s, checkpoints %s" % (rc, saved))
    step = json.loads(open(os.path.join(cut, "metrics.jsonl")).readlines()[-1])["step"]
    rc = mpirun(2, hallu, args + ["--resume"], cut, cut + "-resume.log")
    check(rc == 0, "sigint: --resume at -np 2 from step %d finished (exit %s)" % (step, rc))
    a, b = load_st(os.path.join(full, "checkpoint.hlu")), load_st(os.path.join(cut, "checkpoint.hlu"))
    same = a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    check(same and losses(full) == losses(cut),
          "sigint: resumed run = uninterrupted run, bit for bit (%d tensors, %d logged losses)" % (len(a),
                                                                                               len(losses(full))))


def scenario_uneven(hallu, work):
    for np_, data, batch in ((2, "synthetic:250", "100"), (3, "synthetic:250", "99")):
        out = os.path.join(work, "uneven-%d" % np_)
        t0 = time.time()
        rc = mpirun(np_, hallu, ["--data", data, "--batch-size", batch, "--epochs", "2"], out, out + ".log",
                    timeout=240)
        check(rc == 0, "uneven: %d ranks, %s, global batch %s: finished in %.0f s (exit %s)" %
              (np_, data, batch, time.time() - t0, rc))
    out = os.path.join(work, "indivisible")
    rc = mpirun(2, hallu, ["--data", "synthetic:250", "--batch-size", "33"], out, out + ".log", timeout=120)
    log = open(out + ".log").read()
    check(rc not in (0, "timeout") and log.count("must divide by the 2 ranks") >= 2,
          "uneven: --batch-size 33 on 2 ranks -> exit %s, a named error on every rank" % rc)


def scenario_missing(hallu, work):
    out = os.path.join(work, "missing")
    wrapper = os.path.join(work, "missing-rank.sh")
    with open(wrapper, "w") as f:   # rank 1 is the host without the data
        f.write('#!/bin/sh\nd=synthetic:256\n[ "$OMPI_COMM_WORLD_RANK" = 1 ] && d=imagefolder:%s/no-such-data\n'
                'exec "%s" "$@" --data "$d"\n' % (work, hallu))
    os.chmod(wrapper, 0o755)
    t0 = time.time()
    cmd = MPI + ["-np", "2", wrapper] + BASE + ["--epochs", "1", "--batch-size", "32", "--out", out]
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, text=True)
        rc, log = p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        rc, log = "timeout", (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    named = log.count("rank 1 (host") >= 2 and "no-such-data" in log
    check(rc not in (0, "timeout") and named, "missing: rank 1 without its data -> every rank exits (%s) in %.1f s "
          "with rank 1's message" % (rc, time.time() - t0))


def scenario_isolated(hallu, work):
    args = ["--data", "synthetic:128", "--batch-size", "32", "--epochs", "1", "--method", "simclr", "--sync-bn"]
    runs = {}
    for dev in ("cpu", "cpu-isolated"):
        out = os.path.join(work, "dev-" + dev)
        rc = mpirun(2, hallu, args + ["--device", dev], out, out + ".log")
        check(rc == 0, "isolated: 2 ranks on %s finished (exit %s)" % (dev, rc))
        runs[dev] = out
    a, b = (load_st(os.path.join(runs[d], "checkpoint.hlu")) for d in ("cpu", "cpu-isolated"))
    check(a.keys() == b.keys() and all(a[k] == b[k] for k in a) and losses(runs["cpu"]) == losses(runs["cpu-isolated"]),
          "isolated: ranks on cpu-isolated = ranks on cpu, bit for bit")


def main():
    hallu, work = sys.argv[1], sys.argv[2]
    wanted = sys.argv[3:] or ["uneven", "missing", "kill9", "sigint", "isolated"]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    for name in wanted:
        globals()["scenario_" + name](hallu, work)
    if failures:
        raise SystemExit("FAIL: %d check(s)" % len(failures))
    print("all fault checks passed")


if __name__ == "__main__":
    main()
