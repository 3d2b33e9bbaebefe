"""The gate's outputs: JUnit XML valid against the Jenkins JUnit schema (the one Jenkins'
xUnit plugin, and pytest's own tests, validate against; GitHub and GitLab read the same
dialect), Markdown for $GITHUB_STEP_SUMMARY, exit codes, and the example CI files."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import xmlschema
import yaml

from autotune.gate.judge import Signal
from autotune.gate.report import junit, markdown, table
from autotune.gate.run import GateReport, exit_code_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def junit_schema(tmp_path_factory: pytest.TempPathFactory) -> xmlschema.XMLSchema:
    """junit-10.xsd (Jenkins' JUnit schema, MIT) from pytest's own source distribution on
    PyPI, at the installed pytest's version; not copied into this repository."""
    folder = tmp_path_factory.mktemp("pytest-sdist")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--no-binary", ":all:", f"pytest=={pytest.__version__}", "-d", str(folder)],
                   check=True, capture_output=True, timeout=300)
    [archive] = folder.glob("pytest-*.tar.gz")
    with tarfile.open(archive) as sdist:
        member = next(m for m in sdist.getmembers() if m.name.endswith("/junit-10.xsd"))
        data = sdist.extractfile(member)
        assert data is not None
        return xmlschema.XMLSchema(data.read().decode())


def report(*verdicts: str, exit_code: int = 0, on_inconclusive: str = "exit-3") -> GateReport:
    names = ["throughput", "acceptance", "correctness"]
    signals = [Signal(name, verdict, 0.93, 0.9, 0.97,  # type: ignore[arg-type]
                      f"{name} detail with <angle> & \"quotes\"")
               for name, verdict in zip(names, verdicts)]
    worst = ("regression" if "regression" in verdicts else
             "inconclusive" if "inconclusive" in verdicts else "pass")
    return GateReport(mode="a-b", setup="ngram-mod n=16 | kv f16/f16",
                      against="ngram-mod n=16 | kv f16/f16 measured side by side",
                      signals=signals, verdict=worst, exit_code=exit_code,  # type: ignore[arg-type]
                      seconds=61.5, launches=14, notes=["a note"],
                      on_inconclusive=on_inconclusive)


@pytest.mark.parametrize(("verdicts", "on_inconclusive", "failures"), [
    (("pass", "pass", "pass"), "exit-3", 0),
    (("regression", "pass", "not-applicable"), "exit-3", 1),
    (("inconclusive", "pass", "pass"), "exit-3", 0),
    (("inconclusive", "regression", "pass"), "exit-3", 1),
    (("inconclusive", "regression", "pass"), "fail", 2),
])
def test_junit_output_validates_against_the_jenkins_schema(
        junit_schema: xmlschema.XMLSchema, verdicts: tuple[str, ...], on_inconclusive: str,
        failures: int) -> None:
    worst = "regression" if "regression" in verdicts else "inconclusive"
    code = exit_code_for(worst if worst in verdicts else "pass", on_inconclusive)  # type: ignore[arg-type]
    xml = junit(report(*verdicts, exit_code=code, on_inconclusive=on_inconclusive))
    junit_schema.validate(xml)
    assert xml.count("<testcase") == 3
    assert f'failures="{failures}"' in xml


def test_exit_codes_follow_the_verdict_and_the_inconclusive_setting() -> None:
    assert exit_code_for("pass", "exit-3") == 0
    assert exit_code_for("regression", "pass") == 1
    assert [exit_code_for("inconclusive", mode) for mode in ("exit-3", "pass", "fail")] == [3, 0, 1]


def test_table_and_markdown_name_every_signal_and_the_result() -> None:
    red = report("regression", "pass", "pass", exit_code=1)
    text = table(red)
    assert "result: REGRESSION (exit 1: regression)" in text
    assert all(name in text for name in ("throughput", "acceptance", "correctness"))
    md = markdown(red)
    assert md.startswith("### autotune gate: REGRESSION (exit 1)")
    assert "| throughput | ❌ regression |" in md


def test_example_ci_files_are_valid_yaml_and_name_only_real_commands() -> None:
    from typer.testing import CliRunner

    from autotune.cli import app

    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text())
    gitlab = yaml.safe_load((ROOT / "examples" / "ci" / "gitlab-ci.yml").read_text())
    assert "jobs" in workflow and any("script" in job for job in gitlab.values()
                                      if isinstance(job, dict))
    scripts = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    scripts += [line for job in gitlab.values() if isinstance(job, dict)
                for line in job.get("script", [])]
    commands = [line.split("autotune", 1)[1].split() for script in scripts
                for line in script.splitlines() if line.strip().startswith("autotune ")]
    assert commands, "the examples run autotune"
    runner = CliRunner()
    for words in commands:
        path = [w for w in words if not w.startswith(("-", "$", "\"")) and "." not in w][:2]
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, f"`autotune {' '.join(path)}` is not a command"


def test_examples_install_autotune_from_its_source_never_from_pypi_by_name() -> None:
    # PyPI's "autotune" is an unrelated 2018 hyperparameter tuner with its own `autotune`
    # command: a bare requirement would install it and the gate would run someone else's code.
    installs = [line for path in (ROOT / "examples").rglob("*") if path.is_file()
                for line in path.read_text(errors="replace").splitlines()
                if "pip install" in line and not line.strip().startswith("#")
                and "autotune" in line.split("pip install", 1)[1]]
    assert installs, "the CI examples install autotune"
    for line in installs:
        requirement = line.split("pip install", 1)[1]
        assert " @ " in requirement or "'.[" in requirement, (
            f"installs autotune by its bare name (PyPI's autotune is another project): {line}")
