"""
The run bookkeeping that every script of the study shares, kept here so that the scripts can teach their part.

None of this is about VAEs. It makes a long run safe to interrupt and to repeat:
- mistakes the user can fix end in one line on stderr (`UserError`, `cli`), not a traceback;
- results are written whole or not at all (`atomic_write`), so a killed run leaves no half-written file;
- a training run saves a checkpoint every epoch and resumes from it (`TrainingCheckpoint`);
- a step whose outputs are complete and were made with the same settings is skipped, one whose input models changed
  is redone, and finished work made with other settings is never replaced unless --force asks (`up_to_date`);
- the command line every script shares (`make_parser`, `parse`), which also works pasted into a notebook;
- the device, the seed and the CPU threads (one per core that other processes leave free), chosen and printed at
  the start of a run (`start`).
"""
import argparse
import builtins
import contextlib
import hashlib
import json
import math
import os
import platform
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import torch

SEED = 0


# ---------------------------------------------------------------------------------------------------------------
# Mistakes get one line, not a traceback

class UserError(Exception):
    """A problem the user can fix. `cli` prints it as one line on stderr and exits with code 2."""
    exit_code = 2


class Interrupted(UserError):
    """Ctrl-C: what was interrupted and what is saved. Exit code 130, as for any program stopped by SIGINT."""
    exit_code = 130


def in_notebook():
    """True inside a Jupyter/IPython kernel (Colab included), where sys.argv holds the kernel's own arguments."""
    return hasattr(builtins, "get_ipython") or sys.argv[0].endswith("ipykernel_launcher.py")


def cli(main):
    """Run a script's main(). A UserError or Ctrl-C prints one line on stderr; a script then exits with the error's
    code, while in a notebook the cell simply ends, without SystemExit and IPython's warning about it."""
    try:
        main()
        return
    except UserError as e:
        error = e
    except KeyboardInterrupt:
        error = Interrupted("interrupted; every finished step and epoch is saved: run the same command to resume")
    remove_created_folders()
    print(f"error: {error}" if type(error) is UserError else str(error), file=sys.stderr)
    if not in_notebook():
        sys.exit(error.exit_code)


def check_idx(path):
    """Raise if an IDX file's header does not match its size (a truncated or damaged download)."""
    data = Path(path).read_bytes()
    ok = len(data) >= 4 and data[:2] == b"\x00\x00" and data[2] == 0x08
    if ok:
        ndim = data[3]
        dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        ok = len(data) == 4 + 4 * ndim + math.prod(dims)
    if not ok:
        raise UserError(f"{path} is damaged (truncated or not an IDX file); delete it and download MNIST again")


# ---------------------------------------------------------------------------------------------------------------
# Results are written whole or not at all

def atomic_write(path, write):
    """write(tmp) then rename tmp over path: a run killed at any moment leaves the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(folder):
    """Delete the .NAME.PID.tmp files that killed runs left behind (their process no longer exists)."""
    for tmp in Path(folder).glob(".*.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not process_exists(int(pid)):
            tmp.unlink(missing_ok=True)


def process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # it exists, but belongs to someone else
        return True
    return True


def save_json(path, obj):
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def save_figure(fig, path):
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=Path(path).suffix[1:], dpi=120, bbox_inches="tight"))
    plt.close(fig)


def save_checkpoint(path, obj):
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


CREATED_FOLDERS = []   # the folders prepare_out made in this process, deepest first


def prepare_out(out):
    """Create --out, check that it can be written, and clear what killed runs left there."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose a folder (a missing one is created)")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"cannot create --out {out}: {blocker} is a file, not a folder; choose another --out")
    new = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        CREATED_FOLDERS.extend(new)
        probe = out / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to --out {out} ({e.strerror}); choose a folder you can write to") from None
    remove_stale_temporaries(out)
    return out


def remove_created_folders():
    """After a step that failed: remove the folders this run created and left empty, so no empty --out stays."""
    while CREATED_FOLDERS:
        try:
            CREATED_FOLDERS.pop(0).rmdir()
        except FileNotFoundError:
            pass
        except OSError:   # not empty: it, and the folders above it, stay
            CREATED_FOLDERS.clear()


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints

def read_checkpoint(path):
    """Load with weights_only=True: a checkpoint is data, and a pickle that carries code is refused, not run."""
    try:
        with warnings.catch_warnings():   # a foreign file can make torch warn; the error below says it all
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path} cannot be read safely as a checkpoint ({type(e).__name__}); "
                        f"delete it and rerun the step that writes it") from None
    if not (isinstance(ckpt, dict) and {"model", "state_dict", "complete"} <= ckpt.keys()):
        raise UserError(f"{path} is not a checkpoint of this project; delete it and rerun the step that writes it")
    return ckpt


def load_trained(path, model_class, expected, run_first):
    """The finished model in checkpoint `path`, checked against the architecture `expected` (a model config)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: run `{run_first}` first, with the same --out (and --quick or --latent-dim, "
                        f"if this run has them)")
    ckpt = read_checkpoint(path)
    if not ckpt["complete"]:
        raise UserError(f"{path} is from an unfinished run ({progress(ckpt)}): rerun `{run_first}` with the flags it "
                        f"was started with and the same --out, and it resumes")
    if ckpt["model"] != expected:
        raise UserError(other_model(path, ckpt["model"], expected, run_first))
    model = model_class(**{k: v for k, v in ckpt["model"].items() if k != "arch"})
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def progress(ckpt):
    """How far a checkpoint's run got: "7 of 25 epochs"."""
    return f"{len(ckpt.get('history', []))} of {ckpt.get('train', {}).get('epochs', '?')} epochs"


def other_model(path, found, expected, run_first):
    """What a checkpoint holds instead of the model asked for, and the way on that keeps it."""
    differ = [k for k in expected if found.get(k) != expected[k]]
    if found.get("arch") == expected.get("arch") and differ == ["latent_dim"]:   # a flag can ask for this one
        return (f"{path} holds a {found['arch']} model with latent_dim {found['latent_dim']}, and latent_dim "
                f"{expected['latent_dim']} was asked for: pass --latent-dim {found['latent_dim']} to use it, or point "
                f"--out at a folder whose models have latent_dim {expected['latent_dim']}")
    return (f"{path} holds {found}, but {expected} was asked for: it is another model's file; point --out at the "
            f"right folder, or run `{run_first} --force` to replace it")


class TrainingCheckpoint:
    """One model's checkpoint file while it trains: whether a finished run can be skipped, what an interrupted run
    resumes from, and a save after every epoch. The training loop calls it; it never changes the arithmetic.

    A checkpoint holds the model and training settings, the history so far, the weights, and (until the run is
    complete) Adam's state and every random state, so that a resumed run continues exactly where it stopped."""

    def __init__(self, path, model_config, train_config, force=False):
        self.path, self.settings = Path(path), as_json([model_config, train_config])
        self.saved = read_checkpoint(self.path) if self.path.is_file() and not force else None
        if self.saved and as_json([self.saved["model"], self.saved["train"]]) != self.settings:
            # finished or not, its epochs are work: only --force (or another --out) trains over them
            raise replacing(self.path, self.path.stem, {"model": self.saved["model"], "train": self.saved["train"]},
                            {"model": model_config, "train": train_config},
                            None if self.saved["complete"] else progress(self.saved))
        self.epochs_saved = len(self.saved["history"]) if self.saved else 0   # what a rerun would resume from

    @property
    def complete(self):
        return bool(self.saved and self.saved["complete"])

    def resume(self, model, opt):
        """Load the weights (and, if the run was interrupted, Adam's state); returns the history so far."""
        if not self.saved:
            return []
        model.load_state_dict(self.saved["state_dict"])
        if not self.saved["complete"]:
            device = next(model.parameters()).device
            opt.load_state_dict(self.saved["optimizer"])
            # The checkpoint may come from another device: give Adam the settings this run's path needs.
            capturable = bool(opt.defaults.get("capturable"))
            for group in opt.param_groups:
                group["capturable"] = capturable
                lr = float(group["lr"])   # set_lr sets its value each epoch; here only its type matters
                group["lr"] = torch.tensor(lr, device=device) if capturable else lr
            for state in opt.state.values():
                state["step"] = state["step"].to(device if capturable else "cpu", torch.float32)
            print(f"{self.path.stem}: resuming after epoch {len(self.saved['history'])} from {self.path}")
        return list(self.saved["history"])

    def restore_random_state(self, shuffle, device):
        """Restore the shuffle, CPU and CUDA random states of an interrupted run. Call it last before the first
        epoch: anything that draws random numbers before it (a CUDA graph's warm-up, say) must not shift them."""
        if self.saved and not self.saved["complete"]:
            rng = self.saved["rng"]
            shuffle.set_state(rng["shuffle"])
            torch.set_rng_state(rng["cpu"])
            if device.type == "cuda" and rng.get("cuda") is not None:
                torch.cuda.set_rng_state(rng["cuda"])

    @contextlib.contextmanager
    def on_interrupt(self):
        """Turn Ctrl-C into one line that says which epoch is saved and how to resume."""
        try:
            yield
        except KeyboardInterrupt:
            saved = f"epoch {self.epochs_saved} is saved in {self.path}" if self.epochs_saved else "no epoch was saved"
            raise Interrupted(f"{self.path.stem}: interrupted; {saved}; run the same command to resume") from None

    def save(self, model, opt, history, shuffle, device):
        """After each epoch: everything needed to resume. Ctrl-C waits until the file and the count are written."""
        model_config, train_config = self.settings
        with deferred_interrupt():
            save_checkpoint(self.path, {
                "model": model_config, "train": train_config, "complete": False, "history": history,
                "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
                "rng": {"shuffle": shuffle.get_state(), "cpu": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None}})
            self.epochs_saved = len(history)

    def finish(self, model, history, metrics):
        """The final checkpoint: weights, history and metrics, without the optimiser."""
        model_config, train_config = self.settings
        save_checkpoint(self.path, {"model": model_config, "train": train_config, "complete": True,
                                    "history": history, "state_dict": model.state_dict(), "metrics": metrics})


@contextlib.contextmanager
def deferred_interrupt():
    """Hold Ctrl-C until the block is done, then raise it: a checkpoint and the count of saved epochs stay in step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = signal.signal(signal.SIGINT, lambda *_: pending.append(1))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt


# ---------------------------------------------------------------------------------------------------------------
# Skipping work that is done, redoing work that is stale, and never replacing finished work unasked

def file_digest(path):
    """A short fingerprint of a file: a step that reads a model redoes its work when the model changes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def as_json(obj):
    """The form a config takes after a round trip through JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(obj))


def read_metrics(path):
    """A metrics file's contents, or None if it is absent or unreadable (a step then simply redoes its work)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


INPUTS = ("models", "classifier", "inputs", "code")   # config keys that hold digests of the files a step reads


def up_to_date(step, metrics_path, config, files=(), force=False):
    """Whether a step can skip its work, from the metrics file an earlier run left with its `config`:
    - the same config and every file in `files` there: True, and one line says the step is skipped;
    - nothing finished there, some of `files` missing, or --force: False, the step runs;
    - the same settings, but other input models (the digests under INPUTS): False, the outputs are stale and are
      redone, and one line says which input changed;
    - other settings: a UserError, since finished work is replaced only when --force asks for it."""
    metrics = None if force else read_metrics(metrics_path)
    old = metrics.get("config") if isinstance(metrics, dict) else None
    if not isinstance(old, dict):
        return False
    new = as_json(config)
    if old == new:
        if all(Path(f).is_file() for f in files):
            print(f"{step}: skipped, its outputs are complete and match the settings (--force redoes it)")
            return True
        return False
    settings = lambda c: {k: v for k, v in c.items() if k not in INPUTS}
    if settings(old) != settings(new):
        raise replacing(metrics_path, f"{step} run", old, new)
    print(f"{step}: {', '.join(changed_inputs(old, new))} changed since its outputs were made; redoing them")
    return False


def changed_inputs(old, new):
    """The files whose digests differ between two configs ("conv.pt", "classifier.pt", …)."""
    names = []
    for key in INPUTS:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            names += [k for k in {**a, **b} if a.get(k) != b.get(k)]
        elif a != b:
            names.append(key)
    return [name if "." in name else f"{name}.pt" for name in names]


def replacing(path, what, old, new, unfinished=None):
    """The one line that stops a step from replacing finished work (or an unfinished run's epochs) made with other
    settings: what is there, what these settings would make instead, and the two ways on."""
    before, after = flat(old), flat(new)
    changes = [k for k in {**before, **after} if before.get(k) != after.get(k) and k.split(".")[0] not in INPUTS]
    settings = lambda c: ", ".join(f"{k.rsplit('.', 1)[-1]} {json.dumps(c[k]) if k in c else 'unset'}" for k in changes)
    held = "; ".join(filter(None, [unfinished, settings(before)]))
    return UserError(f"{path} holds {describe(what, old, unfinished)} ({held}); these settings would replace it with "
                     f"{describe('one', new)} ({settings(after)}): write to another --out, or pass --force to "
                     f"replace it")


def describe(what, config, unfinished=None):
    """"a finished full 25-epoch mlp_100_100", "an unfinished quick 1-epoch conv", "a quick one"."""
    settings = {k.rsplit(".", 1)[-1]: v for k, v in reversed(flat(config).items())}   # the first one wins
    epochs = f" {settings['epochs']}-epoch" if settings.get("epochs") else ""
    kind = f"{'quick' if settings.get('quick') else 'full'}{epochs} {what}"
    return f"a {kind}" if what == "one" else f"an unfinished {kind}" if unfinished else f"a finished {kind}"


def flat(config, prefix=""):
    """{"train.lr": 0.003, …}: a nested config as one level, for naming what differs."""
    if isinstance(config, dict) and config:
        return {k: v for key, value in config.items() for k, v in flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: config}


# ---------------------------------------------------------------------------------------------------------------
# The command line every script shares

def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


class Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line that names the flag, instead of the whole usage text; in a notebook, no SystemExit.
        raise UserError(f"{message} (see --help)")


def make_parser(description):
    """The flags every step takes. Each script adds its own."""
    p = Parser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="a smoke test: every code path in seconds on a sliver of MNIST; the numbers mean nothing")
    p.add_argument("--data-dir", default="data", help="where MNIST is, or is downloaded to (default: data)")
    p.add_argument("--out", default=None,
                   help="folder for checkpoints, metrics and figures (default: results, or results-quick with --quick)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="auto picks cuda, then mps, then cpu (default: auto)")
    p.add_argument("--seed", type=int, default=SEED, help=f"random seed (default: {SEED})")
    p.add_argument("--force", action="store_true",
                   help="redo this step, replacing its outputs even when they are complete or made with other settings")
    return p


def parse(parser, argv=None):
    """Parse argv (default sys.argv[1:]). In a notebook, sys.argv is the kernel's (`-f kernel.json`,
    `--HistoryManager.hist_file=:memory:`, …) and none of it is ours, so it is ignored."""
    if argv is None and in_notebook():
        argv = []
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.out is None:   # a smoke test never mixes its files with a real study
        args.out = "results-quick" if args.quick else "results"
    return args


# ---------------------------------------------------------------------------------------------------------------
# The start of every run: seed, device, threads, and what the run will do

def pick_device(name="auto"):
    available = ["cpu"]
    if torch.cuda.is_available():
        available.append("cuda")
    if torch.backends.mps.is_available():
        available.append("mps")
    if name == "auto":
        name = "cuda" if "cuda" in available else "mps" if "mps" in available else "cpu"
    if name not in available:
        raise UserError(f"--device {name} is not available on this machine; available: {', '.join(available)}")
    return torch.device(name)


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"{device.type}: {cpu}, {torch.get_num_threads()} threads"


TORCH_THREADS = torch.get_num_threads()   # torch's own choice: one thread per core


def cpu_seconds():
    """(busy, total) CPU seconds of all cores together since boot, from /proc/stat (Linux; zeros elsewhere). Busy is
    all but idle and iowait, so time the hypervisor gave to other machines (steal) counts as busy."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]   # the "cpu" line: all cores together
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / tick, sum(ticks) / tick


def busy_cores(seconds=0.25):
    """How many cores other processes kept busy during the next `seconds` (0 where /proc/stat is missing)."""
    busy0, total0 = cpu_seconds()
    ours0 = time.process_time()
    time.sleep(seconds)
    busy1, total1 = cpu_seconds()
    ours = time.process_time() - ours0
    return max(0.0, busy1 - busy0 - ours) / max(total1 - total0, 1e-9) * os.cpu_count()


def use_free_cores():
    """Give torch one thread per core that no other process is using, at least one; return the count.

    Each CPU op splits its work across torch's threads, then waits at a barrier for the last of them. When another
    process keeps a core busy, the thread meant to run there waits for the scheduler, and every small op lasts a
    time slice instead of microseconds: beside one other torch job on this project's 2-core machine, an MLP epoch
    took about 90 times as long with 2 threads, under 2 times with 1. The thread count can change the last digits
    of some results (the classifier, t-SNE); OMP_NUM_THREADS, when set, decides instead.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, min(TORCH_THREADS, cores - round(busy_cores())))
    if threads != torch.get_num_threads():   # on an idle machine torch's own setting stays as it was
        torch.set_num_threads(threads)
    return threads


SMOKE_TEST = "SMOKE TEST (--quick): tiny models on a sliver of MNIST; the numbers mean nothing"


def start(args, config):
    """Seed everything, pick the device and the CPU threads, print them and the config, and make sure --out can
    be written."""
    torch.manual_seed(args.seed)
    use_free_cores()
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    print("config: " + json.dumps(config))
    if args.quick:
        print(SMOKE_TEST)
    return device, prepare_out(args.out)


def plural(n, word):
    """'1 unit', '12 units': a count with its noun, for printed lines and the report."""
    return f"{n} {word}{'' if n == 1 else 's'}"
