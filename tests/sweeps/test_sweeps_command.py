"""``python -m diod_ray.sweeps``: the installed sweep command lists its five commands, and the
scripts ``sweeps/*.py`` the README shows run the same commands with the same flags. No Ray starts
(``--help`` only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from diod_ray.sweeps.commands import COMMANDS

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = {
    "alpha-burnin": "alpha_burnin.py",
    "threshold-p": "threshold_p.py",
    "ablations": "ablations.py",
    "report": "report.py",
    "burn-in-length": "burn_in_length.py",
}


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def _flags(help_text: str) -> set[str]:
    return {w.strip("[],") for w in help_text.split() if w.startswith(("--", "[--"))}


def test_help_lists_the_sweep_commands():
    out = _run("-m", "diod_ray.sweeps", "--help")
    assert out.returncode == 0, out.stderr
    assert list(COMMANDS) == list(SCRIPTS)
    for name in SCRIPTS:
        assert f"    {name}" in out.stdout, out.stdout
    bad = _run("-m", "diod_ray.sweeps", "alpha_burnin")
    assert bad.returncode == 2 and "invalid choice: 'alpha_burnin'" in bad.stderr


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["alpha-burnin", "report"])
def test_a_script_is_the_package_command(name):
    """``python sweeps/X.py --help`` and ``python -m diod_ray.sweeps x --help``: the same flags
    under the script's name."""
    module = _run("-m", "diod_ray.sweeps", name, "--help")
    script = _run(str(Path("sweeps") / SCRIPTS[name]), "--help")
    assert module.returncode == 0 and script.returncode == 0, module.stderr + script.stderr
    assert module.stdout.startswith(f"usage: python -m diod_ray.sweeps {name} ")
    assert script.stdout.startswith(f"usage: sweeps/{SCRIPTS[name]} ")
    assert _flags(module.stdout) == _flags(script.stdout)
    if name == "alpha-burnin":
        assert {"--alphas", "--burn-in", "--distill", "--dry-run", "--storage"} <= _flags(
            script.stdout
        )


def test_every_script_is_a_few_lines_calling_the_package():
    for name, script in SCRIPTS.items():
        text = (REPO / "sweeps" / script).read_text()
        code = text.split('"""', 2)[2]  # after the docstring
        assert f"from diod_ray.sweeps.commands import {name.replace('-', '_')} as main" in code
        assert len([ln for ln in code.splitlines() if ln.strip()]) <= 5, script
