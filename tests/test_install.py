"""`pip install .` (not editable) into a fresh venv still finds conf/ from another folder."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_wheel_install_finds_its_configs(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), str(ROOT)], check=True, timeout=1200)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    exe = str(venv / "bin" / "skipexp")
    helped = subprocess.run([exe, "--help"], cwd=elsewhere, capture_output=True, text=True, check=True)
    assert "model" in helped.stdout and "long_only" in helped.stdout
    subprocess.run([exe, "mode=summary", "depth=50", "hydra.run.dir=s"], cwd=elsewhere, check=True,
                   capture_output=True)
    assert json.loads((elsewhere / "s" / "results.json").read_text())["depth_layers"] == 50
    import_site = subprocess.run([str(venv / "bin" / "python"), "-c", "import skipexp, torch; "
                                  "print(skipexp.__file__, torch.__version__)"],
                                 capture_output=True, text=True, check=True, cwd=elsewhere).stdout
    assert "site-packages" in import_site and "+cpu" in import_site
