"""A sample of the per-requirement kill matrix: every sampled fault turns the requirements it names from
PASS (in the default run of the same scenarios) to FAIL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sampled_faults_are_proven(tmp_path):
    out = tmp_path / "matrix.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "kill_matrix.py"), "--per-requirement",
                           "--sample", "3", "--parallel", "2", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.exists(), proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 3, result["rows"]
    for row in result["rows"]:
        assert row["error"] is None, row
        assert row["proves"], f"{row['fault']} turned none of its requirements FAIL in {row['scenarios']}"
    assert result["passed"], "no requirement of the sample had PASS in the default run"
    assert result["proven"] == result["passed"], result["unproven"]
    assert f"proven={len(result['proven'])}/{len(result['passed'])}" in proc.stdout
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_list_requirements_names_the_proving_faults():
    from click.testing import CliRunner

    from conformance.cli import main
    from conformance.reference.faults import FAULTS

    result = CliRunner().invoke(main, ["list", "--requirements", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in json.loads(result.output)["requirements"]}
    for fault in FAULTS:
        for rid in fault.requirements:
            assert fault.name in rows[rid]["faults"], (fault.name, rid)
    text = CliRunner().invoke(main, ["list", "--requirements"]).output
    assert "proving faults: acc-no-accettazione" in text
