"""The run bookkeeping: the command line in a terminal and in a notebook, stale temporary files, Ctrl-C."""
import os
import signal
import subprocess
import sys
import time

import pytest

import bookkeeping
import vae
from conftest import ROOT, run

KERNEL_ARGV = ["/usr/lib/python3/site-packages/ipykernel_launcher.py", "-f", "/root/.local/kernel-1.json",
               "--HistoryManager.hist_file=:memory:"]


def test_a_kernels_argv_is_ignored(monkeypatch):
    """Jupyter, Colab and nbclient start the kernel with arguments of their own; none of them is ours."""
    monkeypatch.setattr(sys, "argv", KERNEL_ARGV)
    args = bookkeeping.parse(vae.make_parser("test"))
    assert args.out == "results" and not args.quick


def test_outside_a_kernel_unknown_arguments_fail(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["vae.py", "--HistoryManager.hist_file=:memory:"])
    with pytest.raises(bookkeeping.UserError, match="unrecognized arguments: --HistoryManager"):
        bookkeeping.parse(vae.make_parser("test"))


def test_an_error_in_a_notebook_is_one_plain_line(monkeypatch, capsys):
    """No SystemExit (IPython would add its 'To exit: use exit' warning): the cell prints one line and ends."""
    monkeypatch.setattr(sys, "argv", KERNEL_ARGV)

    def main():
        bookkeeping.parse(vae.make_parser("test"), ["--seed", "x"])

    bookkeeping.cli(main)   # returns instead of raising SystemExit
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: argument --seed: invalid int value: 'x' (see --help)"]


def test_a_quick_run_writes_to_its_own_folder():
    parser = bookkeeping.make_parser("test")
    assert bookkeeping.parse(parser, ["--quick"]).out == "results-quick"
    assert bookkeeping.parse(parser, []).out == "results"
    assert bookkeeping.parse(parser, ["--quick", "--out", "mine"]).out == "mine"


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    stale = tmp_path / f".conv.pt.{dead_pid()}.tmp"
    live = tmp_path / f".conv.pt.{os.getpid()}.tmp"      # a run still writing it
    other = tmp_path / "notes.tmp"
    for path in (stale, live, other):
        path.write_bytes(b"x")
    bookkeeping.prepare_out(tmp_path)
    assert not stale.exists() and live.exists() and other.exists()


def start_and_interrupt(cmd, ready, tmp_path, timeout=240):
    """Start cmd in its own process group, wait until ready(its stdout so far) is true, then press Ctrl-C
    (SIGINT to the group, as a terminal does). Returns (exit code, stdout, stderr)."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(cmd, cwd=ROOT, stdout=stdout, stderr=stderr, start_new_session=True,
                                   env=dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1", PYTHON=sys.executable))
        deadline = time.monotonic() + timeout
        while not ready(out.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=60)
    return code, out.read_text(), err.read_text()


def test_ctrl_c_is_one_line_exit_130_and_the_same_command_resumes(tiny_data, tmp_path):
    cmd = [sys.executable, "vae.py", "--quick", "--hidden", "20", "20", "--epochs", "1000", "--data-dir",
           str(tiny_data), "--out", str(tmp_path / "out")]
    code, _, err = start_and_interrupt(cmd, lambda stdout: "epoch  2/1000" in stdout, tmp_path)
    assert code == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "mlp_20_20: interrupted; epoch" in lines[0] and "run the same command to resume" in lines[0]
    saved = int(lines[0].split("; epoch ")[1].split()[0])
    assert saved >= 1
    code, stdout, _ = start_and_interrupt(cmd, lambda stdout: "resuming" in stdout, tmp_path)
    assert f"resuming after epoch {saved} " in stdout and code == 130


def test_run_all_stops_at_ctrl_c(tiny_data, tmp_path):
    out = tmp_path / "out"
    cmd = ["bash", "run_all.sh", "--quick", "--data-dir", str(tiny_data), "--out", str(out)]
    code, _, err = start_and_interrupt(cmd, lambda stdout: "mlp_200_200 epoch" in stdout, tmp_path)
    assert code == 130, err
    assert err.strip().splitlines()[-1].startswith("run_all.sh: interrupted in vae.py"), err
    assert "Traceback" not in err
    assert not (out / "conv.pt").exists()          # no later step ran
