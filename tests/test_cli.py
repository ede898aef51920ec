import json
import subprocess
import sys

from lumenrec.cli import main


def test_help_lists_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "data" in out and "eval" in out and "quickstart" in out


def test_unknown_dataset_is_a_one_line_error(capsys):
    assert main(["data", "info", "no-such-dataset"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown dataset 'no-such-dataset'" in err[0]


def test_console_script_runs_baselines_on_a_file_dataset(tmp_path):
    (tmp_path / "T.inter.json").write_text(json.dumps({str(u): [(u + j) % 7 for j in range(5)] for u in range(30)}))
    r = subprocess.run([sys.executable, "-m", "lumenrec", "eval", "baselines", str(tmp_path), "--ks", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["markov"]["recall@1"] == 1.0 and out["markov"]["n"] == 30


def test_help_of_every_command_imports_no_heavy_module():
    """`lumenrec --help` and each subcommand's --help build the parser without torch, scipy, chromadb."""
    code = (
        "import sys, contextlib, io\n"
        "from lumenrec.cli import build_parser\n"
        "p = build_parser()\n"
        "sub = next(a for a in p._actions if a.__class__.__name__ == '_SubParsersAction')\n"
        "for name in sub.choices:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            p.parse_args([name, '--help'])\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print(sorted(m for m in ('torch', 'scipy', 'chromadb', 'transformers', 'sentence_transformers', 'gradio') if m in sys.modules))\n"
        "print(len(sub.choices))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    heavy, n = r.stdout.strip().splitlines()
    assert heavy == "[]", f"--help imported {heavy}"
    assert int(n) >= 10
