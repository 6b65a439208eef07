"""The notebook is a product of the scripts: the committed vae_study.ipynb is what notebook.py writes today, and it
runs from top to bottom in quick mode on the tiny data, in an empty folder, as Colab's Run all would."""
import base64
import json
import os
import signal
import threading
import time

import nbclient   # test-only dependencies, with ipykernel: pip install nbclient ipykernel
import nbformat
import pytest

import notebook
from conftest import ROOT, run


def test_committed_notebook_is_up_to_date():
    committed = (ROOT / notebook.NOTEBOOK).read_bytes()
    assert committed == notebook.render(notebook.build()).encode("utf-8"), \
        "vae_study.ipynb is stale: run `python notebook.py` and commit it"


def test_generator_writes_the_same_bytes_twice(tmp_path):
    path = tmp_path / "study.ipynb"
    for expected in ("wrote", "is up to date"):
        result = run("notebook.py", "--output", path)
        assert result.returncode == 0 and expected in result.stdout, result.stderr
    assert path.read_bytes() == (ROOT / notebook.NOTEBOOK).read_bytes()
    assert not any(cell.get("outputs") for cell in json.loads(path.read_text())["cells"])


# ---------------------------------------------------------------------------------------------------------------
# The layout follows run_all.sh and the imports, found by the generator, never listed by hand

def fake_project(root, steps, files):
    root.mkdir()
    (root / "run_all.sh").write_text("step() { :; }\n" + "".join(f'step "{t}" {s}\n' for t, s in steps))
    for name, body in files.items():
        (root / name).write_text(f'"""{name}, the docstring."""\n{body}')
    return root


def layout(nb):
    return [cell["id"] for cell in nb["cells"] if cell["id"].startswith(("write-", "run-"))]


def test_modules_come_before_the_first_part_that_needs_them(tmp_path):
    root = fake_project(tmp_path / "p", [("One", "a.py"), ("Two", "b.py")], {
        "a.py": "import os\nfrom core import f\n",
        "core.py": "import consts\n",
        "consts.py": "X = 1\n",
        "b.py": "import a, core\n\ndef g():\n    from extra import h\n",
        "extra.py": "import consts\n",
        "unused.py": "",
    })
    nb = notebook.build(root)
    assert layout(nb) == ["write-run_all", "write-consts", "write-core", "write-a", "run-a", "write-extra", "write-b",
                          "run-b"]
    about_a = next(c for c in nb["cells"] if c["id"] == "about-a")
    assert "".join(about_a["source"]) == "## One (`a.py`)\n\na.py, the docstring."
    write_core = next(c for c in nb["cells"] if c["id"] == "write-core")
    assert "".join(write_core["source"]) == "%%writefile core.py\n" + (root / "core.py").read_text()


def test_a_part_may_not_import_a_later_one(tmp_path):
    root = fake_project(tmp_path / "p", [("One", "a.py"), ("Two", "b.py")], {"a.py": "import b\n", "b.py": ""})
    with pytest.raises(notebook.NotebookError, match=r"a.py imports b.py \(directly .*\), which run_all.sh runs later"):
        notebook.build(root)


def test_the_real_layout_follows_run_all():
    nb = notebook.build()
    scripts = [script for _, script in notebook.read_steps(ROOT)]
    assert [c["id"] for c in nb["cells"] if c["id"].startswith("run-")] == [f"run-{s[:-3]}" for s in scripts]
    assert nb["cells"][-1]["id"] == "report" and scripts[-1] == "report.py"


# ---------------------------------------------------------------------------------------------------------------
# How a step is run: a failure raises, and a skipped step still shows the figures it wrote before

FAKE_STEP = """\
import sys
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--out") + 1])
out.mkdir(exist_ok=True)
if "fail" in sys.argv[0]:
    print("error: something is wrong", file=sys.stderr)
    sys.exit(2)
if not (out / "fig.png").exists():
    (out / "fig.png").write_bytes(b"png")
    print("epoch 1/1")
else:
    print("skipped")
"""


def test_runner_raises_on_failure_and_shows_figures_when_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("step.py", "fail.py"):
        (tmp_path / name).write_text(FAKE_STEP)
    shown = []
    namespace = {"QUICK": True, "DATA_DIR": "data", "OUT": str(tmp_path / "out"), "DEVICE": "cpu"}
    exec(notebook.RUNNER, namespace)
    namespace["display"] = lambda image: shown.append(image.filename)
    namespace["run"]("step.py")
    namespace["run"]("step.py")
    assert shown == [str(tmp_path / "out" / "fig.png")] * 2
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "skipped" in out and f"--out {tmp_path / 'out'}" in out
    with pytest.raises(RuntimeError, match=r"fail.py failed \(exit 2\)"):
        namespace["run"]("fail.py")
    assert "error: something is wrong" in capsys.readouterr().out


def test_runner_stops_the_step_when_the_cell_is_interrupted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "slow.py").write_text("import os, time\nprint(os.getpid())\ntime.sleep(30)\n")
    namespace = {"QUICK": False, "DATA_DIR": "data", "OUT": str(tmp_path / "out"), "DEVICE": "cpu"}
    exec(notebook.RUNNER, namespace)
    pids = []
    namespace["print"] = lambda *args, **kwargs: pids.append(args[0]) if str(args[0]).strip().isdigit() else None
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()   # the stop button, after a second
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        namespace["run"]("slow.py")
    assert time.monotonic() - started < 20
    with pytest.raises(ProcessLookupError):   # the step has ended, and has been waited for
        os.kill(int(pids[0]), 0)


@pytest.mark.parametrize("out, quick, expected", [(None, False, "results"), (None, True, "results-quick"),
                                                  ("elsewhere", True, "elsewhere")])
def test_out_none_passes_no_out(out, quick, expected):
    namespace = {"QUICK": quick, "DATA_DIR": "data", "OUT": out, "DEVICE": "auto"}
    exec(notebook.RUNNER, namespace)
    assert ("--out" in namespace["FLAGS"]) == (out is not None) and ("--quick" in namespace["FLAGS"]) == quick
    assert str(namespace["RESULTS"]) == expected


# ---------------------------------------------------------------------------------------------------------------
# Run all, headless: nbclient and ipykernel stand in for Colab

@pytest.fixture(scope="module")
def executed(tiny_data, tmp_path_factory):
    """The notebook after Run all in quick mode, in an empty folder: (notebook, that folder, its OUT)."""
    nb = nbformat.reads(notebook.render(notebook.build()), as_version=4)
    workdir, out = tmp_path_factory.mktemp("colab"), tmp_path_factory.mktemp("out") / "results"
    parameters = next(cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", []))
    parameters.source = f"QUICK = True\nDATA_DIR = {str(tiny_data)!r}\nOUT = {str(out)!r}\nDEVICE = 'cpu'\n"
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()   # raises CellExecutionError at the first cell that raises
    return nb, workdir, out


def images(cell):
    return [base64.b64decode(o["data"]["image/png"]) for o in cell.outputs if "image/png" in o.get("data", {})]


def test_every_cell_ran_without_error(executed):
    nb, _, _ = executed
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is not None, cell.id
            assert not [o for o in cell.outputs if o.output_type == "error"], cell.id


def test_every_file_was_written_byte_for_byte(executed):
    nb, workdir, _ = executed
    written = [cell.source.split("\n", 1)[0].split()[1] for cell in nb.cells if cell.source.startswith("%%writefile")]
    assert "vae.py" in written and "report.py" in written
    for name in written:
        assert (workdir / name).read_bytes() == (ROOT / name).read_bytes(), name


def test_each_step_shows_the_figures_it_wrote(executed):
    nb, _, out = executed
    shown = {cell.id: images(cell) for cell in nb.cells if cell.id.startswith("run-")}
    assert [len(shown[f"run-{s}"]) > 0 for s in ("vae", "conv_vae", "tsne", "interpolate")] == [True] * 4
    every_png = sorted(p.read_bytes() for p in out.glob("*.png"))
    assert sorted(sum(shown.values(), [])) == every_png, "a figure is missing or shown twice"
    run_vae = "".join(o.get("text", "") for o in nb.cells[[c.id for c in nb.cells].index("run-vae")].outputs)
    assert "mlp_100_100 epoch  1/1" in run_vae, "the epoch lines of a step are not shown"


def test_last_cell_shows_the_report(executed):
    nb, _, out = executed
    last = nb.cells[-1]
    text = "".join(o["data"]["text/markdown"] for o in last.outputs if "text/markdown" in o.get("data", {}))
    assert text.startswith("# Variational autoencoders on MNIST") and "### Observations on the interpolation" in text
    assert str(out / "REPORT.pdf") in text and "files.download" in text
    report = (out / "REPORT.md").read_text()
    report_figures = sorted(p.read_bytes() for p in out.glob("*.png") if f"]({p.name})" in report)
    assert report_figures and sorted(images(last)) == report_figures
