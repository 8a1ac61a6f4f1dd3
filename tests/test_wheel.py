"""The wheel: built from the source tree with `python -m build` (source distribution, then the wheel
from it), installed, not editable, in a fresh virtual environment, it runs `pec-conformance run` with
the schemas, the report template and the requirement catalogue it carries.

Offline: the build uses the build tools of the test environment (`--no-isolation`, declared in the
test extras), and the fresh environment sees the test environment's installed dependencies through a
.pth file, after its own site-packages; nothing is downloaded. The test checks that the package that
ran is the installed one, not the source tree.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from conformance.report.model import validate_report

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "schemas"
_IGNORED = shutil.ignore_patterns(".git", ".venv", ".tox", "build", "dist", "*.egg-info", "__pycache__",
                                  "reports", ".pytest_cache", ".ruff_cache", "tests")

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(importlib.util.find_spec("build") is None,
                                 reason="the `build` package is missing (install the test extras: pip install -e .[test])")]


def _source_tree(dest: Path) -> Path:
    """A copy of the tree the wheel is built from, so that the build leaves nothing in the checkout."""
    shutil.copytree(REPO, dest, ignore=_IGNORED, symlinks=True)
    return dest


def _run(cmd: list[str], *, cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("wheel")
    src = _source_tree(work / "src")
    dist = work / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)], cwd=work, timeout=180)
    (wheel,) = dist.glob("pec_conformance-*.whl")
    (sdist,) = dist.glob("pec_conformance-*.tar.gz")
    return wheel, sdist


def test_the_wheel_carries_schemas_template_and_catalogue(built):
    wheel, sdist = built
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for path in sorted(SCHEMAS.iterdir()):
            assert zf.read(f"conformance/schemas/{path.name}") == path.read_bytes(), path.name
        assert "conformance/report/templates/report.html.j2" in names
        assert "conformance/requirements.toml" in names
        assert not any(n.startswith(("tests/", "schemas/")) for n in names)
    with tarfile.open(sdist) as tf:
        shipped = {Path(n).name for n in tf.getnames() if "/schemas/" in n}
    assert {p.name for p in SCHEMAS.iterdir()} <= shipped


def test_the_wheel_installs_in_a_fresh_venv_and_runs(built, tmp_path):
    wheel, _ = built
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
          str(wheel)], cwd=tmp_path)
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=tmp_path).stdout.strip())
    # The dependencies already installed for the tests, after the fresh environment's own site-packages.
    outer = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (purelib / "zz-test-dependencies.pth").write_text("".join(f"{p}\n" for p in outer))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}

    where = json.loads(_run([str(python), "-c",
                             "import json, conformance, conformance.schemafiles as s\n"
                             "print(json.dumps([conformance.__file__, str(s.schema_path('report.schema.json'))]))"],
                            cwd=tmp_path, env=env).stdout)
    for path in where:
        assert Path(path).resolve().is_relative_to(purelib.resolve()), where

    out = tmp_path / "report"
    _run([str(venv / "bin" / "pec-conformance"), "run", "--quiet", "--scenario", "acceptance.single", "--out",
          str(out)], cwd=tmp_path, env=env, timeout=120)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert validate_report(report) == []
    assert [s["verdict"] for s in report["scenarios"]] == ["PASS"]
    # The receipts were judged against the packaged daticert.xsd: FMT-07 passed, not skipped.
    assert report["scenarios"][0]["requirements"].get("FMT-07") == "PASS"
    assert "acceptance.single" in (out / "report.html").read_text(encoding="utf-8")
