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
