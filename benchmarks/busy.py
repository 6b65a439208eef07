"""Other work on the machine, for timing under load: K processes, each multiplying 256×256 float32 matrices in a
loop with torch's default threads, as another training job would.

    python benchmarks/busy.py 1          # one such process, until interrupted

The benchmarks use it as `with busy(K): ...`. The processes get a clean environment: no OMP_* or MKL_* setting
of ours reaches them, so they run as a job started by someone else would.
"""
import contextlib
import os
import subprocess
import sys

LOOP = """
import os, sys, torch
A = torch.randn(256, 256) / 16
print("ready", flush=True)
while os.getppid() == int(sys.argv[1]):   # ends with the process that started it, however that one ends
    for _ in range(100):
        A = torch.tanh(A @ A)   # (256, 256); tanh keeps the values bounded
"""


@contextlib.contextmanager
def busy(k):
    """Start k busy processes and wait until each is multiplying; stop them on exit."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("OMP_", "MKL_", "GOMP_"))}
    procs = [subprocess.Popen([sys.executable, "-c", LOOP, str(os.getpid())], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(k)]
    try:
        for p in procs:
            p.stdout.readline()  # "ready": torch is imported and the loop has started
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    with busy(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        print("busy; Ctrl-C stops", flush=True)
        try:
            subprocess.run(["sleep", "infinity"])
        except KeyboardInterrupt:
            pass
