"""Every command given bad arguments: exit 2, one line on stderr starting with `error:`, no traceback, and
nothing run or written. In-process through click (fast), plus the real entry point for a few cases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conformance.cli import main


def _leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += _leaf_commands(command, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    (tmp_path / "not.json").write_text("{ not json")
    (tmp_path / "not.toml").write_text("= not toml")
    (tmp_path / "a-file").write_text("x")
    return tmp_path


CASES: list[tuple[str, ...]] = [
    ("validate",),
    ("validate", "missing.eml", "--index", "nope.ldif"),
    ("validate", "x.eml", "--expect", "no-such-kind"),
    ("validate", "not.json", "--ca", "not.json"),
    ("list", "--report", "nope.json"),
    ("list", "--report", "not.json"),
    ("explain",),
    ("explain", "ZZZ-99"),
    ("explain", "D99"),
    ("pki", "init", "out"),
    ("pki", "init", "full", "--provider", "P", "--domain", "p.example"),
    ("pki", "init", "out", "--provider", "P", "--provider", "Q", "--domain", "p.example"),
    ("pki", "revoke", "nope", "1"),
    ("pki", "revoke", "full", "1"),
    ("run", "--jobs", "0"),
    ("run", "--jobs", "many"),
    ("run", "--timeout-multiplier", "-1"),
    ("run", "--timeout-multiplier", "0"),
    ("run", "--keep", "0"),
    ("run", "--keep", "2", "--out", "elsewhere"),
    ("run", "--reference-fault", "no-such-fault"),
    ("run", "--scenario", "no-such-scenario-*"),
    ("run", "--expectations", "not.toml"),
    ("run", "--expectations", "nope.toml"),
    ("run", "--target", "not.toml"),
    ("run", "--out", "a-file"),
    ("diff", "nope.json", "nope.json"),
    ("diff", "not.json", "not.json"),
    ("reference", "serve"),
    ("reference", "serve", "--config", "not.toml"),
    ("reference", "faults", "--xml"),
    ("reference", "init", "full"),
    ("sample", "full"),
    ("sample", "out", "--digest", "md5"),
    ("sample", "a-file/below"),
    ("no-such-command",),
]


def _assert_usage_error(result, args) -> None:
    assert result.exit_code == 2, (args, result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), (args, repr(result.exception))
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", CASES, ids=[" ".join(c) for c in CASES])
def test_bad_arguments_are_one_line_and_exit_2(workdir, args):
    result = CliRunner().invoke(main, list(args))
    _assert_usage_error(result, args)
    assert not (workdir / "reports").exists(), "a refused run wrote a report folder"
    assert not (workdir / "out").exists() and not (workdir / "elsewhere").exists()


@pytest.mark.parametrize("command", _leaf_commands(main), ids=" ".join)
def test_every_command_refuses_an_unknown_option(workdir, command):
    _assert_usage_error(CliRunner().invoke(main, [*command, "--no-such-option"]), command)


def test_the_installed_entry_point_behaves_the_same(workdir):
    for args in (("run", "--jobs", "0"), ("sample", "full"), ("explain", "D99")):
        proc = subprocess.run([sys.executable, "-m", "conformance.cli", *args], capture_output=True, text=True,
                              timeout=60, cwd=workdir)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_sample_with_force_writes_into_a_non_empty_folder(workdir):
    result = CliRunner().invoke(main, ["sample", "full", "--force"])
    assert result.exit_code == 0, result.output
    assert (workdir / "full" / "accettazione.eml").is_file() and (workdir / "full" / "x.txt").is_file()
