"""What the `hallu train` end-to-end checks share: running the CLI on a run
directory, collecting failures, and counting named checks for the summary line
(a check fails once however many failures it records)."""
import subprocess


def run_cli(hallu, args, failures, expect=0):
    """hallu ARGS; appends a failure (the command, its exit status and stderr's
    tail) to failures unless it exits with expect. Returns the finished process."""
    p = subprocess.run([hallu] + args, capture_output=True, text=True)
    if p.returncode != expect:
        failures.append(f"{' '.join(args)}: exit {p.returncode}, expected {expect}\n{p.stderr[-1500:]}")
    return p


class TrainChecks:
    def __init__(self, hallu, args):
        self.hallu, self.args = hallu, args
        self.failures, self.outcomes = [], []

    def run(self, out, *extra, expect=0):
        """hallu ARGS --out OUT EXTRA...; a failure unless it exits with expect."""
        p = subprocess.run([self.hallu] + self.args + ["--out", out] + list(extra), capture_output=True, text=True)
        if p.returncode != expect:
            self.failures.append(f"{out} {' '.join(extra)}: exit {p.returncode}, expected {expect}\n{p.stderr[-2000:]}")
        return p

    def check(self, body):
        before = len(self.failures)
        body()
        self.outcomes.append(len(self.failures) == before)

    def finish(self):
        """Prints the failures and the summary; the process's exit status."""
        for f in self.failures:
            print("FAIL", f)
        passed = sum(self.outcomes)
        print(f"{passed} passed, {len(self.outcomes) - passed} failed")
        return 1 if self.failures else 0
