"""The notebook is a product of the scripts: the committed vae_study.ipynb is what notebook.py writes today, and it
runs from top to bottom in quick mode on the tiny data, in an empty folder, as Colab's Run all would."""
import base64
import contextlib
import io
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import nbclient   # test-only dependencies, with ipykernel: pip install nbclient ipykernel
import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell

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

README = """\
- **The whole study** took 12 min 34 s on this project's 3-core test
  machine (a test, no GPU), and more.
- **`bash run_all.sh --quick`** is a smoke test: every step on a sliver of MNIST, in about 2 minutes on that machine.
"""


def fake_project(root, steps, files, readme=README):
    root.mkdir()
    (root / "run_all.sh").write_text("#!/bin/sh\n# The fake study.\nstep() { :; }\n"
                                     + "".join(f'step "{t}" {s}\n' for t, s in steps))
    (root / "README.md").write_text(readme)
    for name, body in files.items():
        (root / name).write_text(f'"""{name}, the docstring."""\n{body}')
    return root


def run_cells(nb, folder):
    """Each code cell that writes a file, run by IPython itself in `folder`, as a kernel would: %%writefile and
    %%writefile -a with their own handling of a cell's last newline."""
    shell = InteractiveShell.instance()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for cell in nb["cells"]:
            if cell["cell_type"] == "code" and cell["id"].startswith("write-"):
                with contextlib.redirect_stdout(io.StringIO()):
                    result = shell.run_cell("".join(cell["source"]))
                assert result.success, (cell["id"], result.error_in_exec or result.error_before_exec)
    finally:
        os.chdir(cwd)


def collapsed(cell):
    return cell["metadata"].get("cellView") == "form" and cell["metadata"].get("jupyter", {}).get("source_hidden")


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
    run_cells(nb, tmp_path)
    for name in ("run_all.sh", "consts.py", "core.py", "extra.py", "a.py", "b.py"):
        assert (tmp_path / name).read_bytes() == (root / name).read_bytes(), name
    assert not (tmp_path / "unused.py").exists()


def test_a_part_may_not_import_a_later_one(tmp_path):
    root = fake_project(tmp_path / "p", [("One", "a.py"), ("Two", "b.py")], {"a.py": "import b\n", "b.py": ""})
    with pytest.raises(notebook.NotebookError, match=r"a.py imports b.py \(directly .*\), which run_all.sh runs later"):
        notebook.build(root)


def test_the_real_layout_follows_run_all():
    nb = notebook.build()
    scripts = [script for _, script in notebook.read_steps(ROOT)]
    assert [c["id"] for c in nb["cells"] if c["id"].startswith("run-")] == [f"run-{s[:-3]}" for s in scripts]
    assert scripts[-1] == "report.py" and [c["id"] for c in nb["cells"][-3:]] == ["about-report-cell", "report",
                                                                                  "hand-in"]
    hand_in = "".join(nb["cells"][-1]["source"])
    assert "REPORT.pdf" in hand_in and "File → Print" in hand_in and "--to html" in hand_in


# ---------------------------------------------------------------------------------------------------------------
# The study first: the plumbing is collapsed, and each script is written section by section

TEACHING = ["vae.py", "conv_vae.py", "classifier.py", "tsne.py", "interpolate.py"]
PLUMBING = ["run_all.sh", "bookkeeping.py", "typeset.py", "report.py"]


def test_the_first_visible_code_is_part_one():
    cells = [c for c in notebook.build()["cells"] if c["cell_type"] == "code" and not collapsed(c)]
    assert [c["id"] for c in cells[:2]] == ["parameters", "device"]
    assert "".join(cells[2]["source"]).startswith("%%writefile vae.py\n")


def test_every_plumbing_cell_is_collapsed_under_a_one_line_title():
    cells = notebook.build()["cells"]
    hidden = [c["id"] for c in cells if c["cell_type"] == "code" and collapsed(c)]
    assert sorted(hidden) == sorted(["runner", "report"] + [f"write-{Path(name).stem}" for name in PLUMBING])
    for i, cell in enumerate(cells):
        if cell["id"] in hidden:
            assert cell["source"][0].startswith("#@title ") and "%%" not in cell["source"][0], cell["id"]
            assert cell["metadata"]["tags"] == ["hide-input"], cell["id"]   # nbconvert can leave its code out
            title = "".join(cells[i - 1]["source"])
            assert cells[i - 1]["cell_type"] == "markdown" and "\n" not in title and "skip it" in title, cell["id"]
        elif cell["cell_type"] == "code":
            assert "cellView" not in cell["metadata"] and "jupyter" not in cell["metadata"], cell["id"]
            assert "hide-input" not in cell["metadata"].get("tags", []), cell["id"]
    for name in PLUMBING:
        assert not any("".join(c["source"]).startswith(f"%%writefile {name}") for c in cells), name


def test_each_teaching_script_is_written_by_its_sections_byte_for_byte(tmp_path):
    nb = notebook.build()
    cells = {c["id"]: c for c in nb["cells"]}
    order = list(cells)
    for name in TEACHING:
        stem, source = Path(name).stem, (ROOT / name).read_text(encoding="utf-8")
        markers = [line for line in source.split("\n") if re.fullmatch(r"# -{10,}", line)]
        ids = [i for i in order if i == f"write-{stem}" or re.fullmatch(rf"write-{stem}-\d+", i)]
        assert len(markers) >= 3 and len(ids) == len(markers) + 1, name
        for k, cell_id in enumerate(ids):
            first = cells[cell_id]["source"][0]
            assert first == (f"%%writefile -a {name}\n" if k else f"%%writefile {name}\n"), cell_id
            if k:   # each section under a heading drawn from its comment, or naming what the section defines
                heading = "".join(cells[order[order.index(cell_id) - 1]]["source"]).split("\n")[0]
                assert heading.startswith("### ") and (f"# {heading[4:]}\n" in source or all(
                    f"def {n.strip('`()')}(" in source for n in heading[4:].split(", "))), (cell_id, heading)
    run_cells(nb, tmp_path)
    for name in TEACHING + PLUMBING:
        assert (tmp_path / name).read_bytes() == (ROOT / name).read_bytes(), name


AWKWARD = "\n".join([   # a file whose text is hard to quote, and whose sections end in blank lines
    "X = 1",
    "# " + "-" * 111,
    "# First section: it ends in blank lines",
    "# and says more on a second line",
    "",
    "def f():",
    "    " + "'" * 3 + "Three quotes of each kind: " + "\\'" * 3 + " and " + '\\"' * 3 + ", a backslash \\\\ at the end \\\\",
    "%magic at the start of a line, !shell too, " + '"' * 3 + " bare",
    "    " + "'" * 3,
    "",
    "",
    "# " + "-" * 111,
    "",
    "def g():",
    '    return r"\\n"   # no comment under the marker: the heading names what the section defines',
    ""])


def test_awkward_files_are_written_byte_for_byte(tmp_path):
    root = fake_project(tmp_path / "p", [("One", "awkward.py"), ("Report", "report.py")],
                        {"awkward.py": AWKWARD, "report.py": "import core\n", "core.py": AWKWARD})
    nb = notebook.build(root)
    text = {c["id"]: "".join(c["source"]) for c in nb["cells"]}
    assert text["about-awkward-1"] == ("### First section: it ends in blank lines\n\nand says more on a second line"
                                       "\n\nDefines `f()`.")
    assert text["about-awkward-2"] == "### `g()`"
    assert text["write-awkward-1"].endswith("'" * 3 + "\n\n\n") and collapsed(next(c for c in nb["cells"]
                                                                               if c["id"] == "write-core"))
    run_cells(nb, tmp_path)
    for name in ("awkward.py", "core.py", "report.py"):
        assert (tmp_path / name).read_bytes() == (root / name).read_bytes(), name


def test_the_times_come_from_the_readme(tmp_path):
    root = fake_project(tmp_path / "p", [("One", "a.py")], {"a.py": ""})
    text = {c["id"]: " ".join("".join(c["source"]).split()) for c in notebook.build(root)["cells"]}
    assert ("the whole study took 12 min 34 s on this project's 3-core test machine (a test, no GPU)" in text["title"]
            and "take about 2 minutes on that machine." in text["title"])
    assert "the whole study took 13 minutes on a 2-core CPU" in text["device"]
    (root / "README.md").write_text(README.replace("took 12 min 34 s", "took a while"))
    with pytest.raises(notebook.NotebookError, match="README.md no longer says"):
        notebook.build(root)


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
    pattern = re.compile(r"%%writefile(?: -a)? (\S+)\n|#@title Writes (\S+) ")
    written = {m[1] or m[2] for cell in nb.cells for m in [pattern.match(cell.source)] if m}
    assert written == set(TEACHING + PLUMBING)
    for name in written:
        assert (workdir / name).read_bytes() == (ROOT / name).read_bytes(), name


def test_every_figure_is_shown_once_after_its_step(executed):
    nb, _, out = executed
    shown = {cell.id: images(cell) for cell in nb.cells if cell.cell_type == "code"}
    assert [len(shown[f"run-{s}"]) > 0 for s in ("vae", "conv_vae", "tsne", "interpolate")] == [True] * 4
    assert not [cell_id for cell_id, pngs in shown.items() if pngs and not cell_id.startswith("run-")]
    every_png = sorted(p.read_bytes() for p in out.glob("*.png"))
    assert sorted(sum(shown.values(), [])) == every_png, "a figure is missing or shown twice"
    run_vae = "".join(o.get("text", "") for o in nb.cells[[c.id for c in nb.cells].index("run-vae")].outputs)
    assert "mlp_100_100 epoch  1/1" in run_vae, "the epoch lines of a step are not shown"


def test_the_report_cell_shows_the_text_and_marks_each_figure(executed):
    nb, _, out = executed
    cell = next(c for c in nb.cells if c.id == "report")
    text = "".join(o["data"]["text/markdown"] for o in cell.outputs if "text/markdown" in o.get("data", {}))
    assert text.startswith("# Variational autoencoders on MNIST") and "### Observations on the interpolation" in text
    assert str(out / "REPORT.pdf") in text and "files.download" in text
    figures = re.findall(r"^!\[.*\]\((.+)\)$", (out / "REPORT.md").read_text(), re.M)
    assert figures and all(f"(`{name}`)" in text for name in figures) and "![" not in text
