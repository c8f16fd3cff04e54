"""The chaoskit command, run as a real process: output, exit codes, nothing touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from chaoskit import __version__
from chaoskit.exitcodes import ExitCode

Write = Callable[[str, str], Path]


def chaoskit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHAOSKIT_POLICY"}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "chaoskit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


def test_version() -> None:
    done = chaoskit("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"chaoskit {__version__}")


def test_help_lists_commands_and_exit_codes() -> None:
    done = chaoskit("--help")
    assert done.returncode == 0
    for word in ("validate", "schema", "6 failed", "70 a bug in chaoskit"):
        assert word in done.stdout


def test_validate_the_examples_from_the_repository_root(root: Path) -> None:
    done = chaoskit("validate", "experiments/", cwd=root)
    assert done.returncode == ExitCode.HELD, done.stdout + done.stderr
    assert "policy: safety/default.yaml" in done.stdout
    assert "0 invalid" in done.stdout


def test_invalid_file_prints_every_problem_and_exits_2(write: Write, root: Path) -> None:
    good = (root / "experiments" / "backend-latency.yaml").read_text()
    bad = write(
        "bad.yaml",
        good.replace("latency: 300ms", "latency: 300").replace("rate: 100/s", "rate: fast"),
    )
    assert bad.read_text() != good
    done = chaoskit("validate", str(bad), str(root / "experiments" / "quickstart.yaml"))
    assert done.returncode == ExitCode.INVALID
    assert (
        f"{bad}:" in done.stdout
        and "load.rate" in done.stdout
        and "faults[0].latency" in done.stdout
    )
    assert "1 valid, 1 invalid" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_policy_violations_name_field_and_rule(write: Write, root: Path) -> None:
    policy = write("strict.yaml", "allowed_target_kinds: [container]\n")
    done = chaoskit(
        "validate", "--policy", str(policy), str(root / "experiments" / "quickstart.yaml")
    )
    assert done.returncode == ExitCode.INVALID
    assert (
        "targets.backends.kind" in done.stdout and "[policy: allowed_target_kinds]" in done.stdout
    )
    assert (
        chaoskit(
            "validate", "--no-policy", str(root / "experiments" / "quickstart.yaml")
        ).returncode
        == 0
    )


def test_invalid_policy_file_is_reported(write: Write, root: Path) -> None:
    policy = write("broken.yaml", "max_fault_duraton: 1m\n")
    done = chaoskit("validate", "--policy", str(policy), str(root / "experiments"))
    assert done.returncode == ExitCode.INVALID
    assert "did you mean 'max_fault_duration'" in done.stderr


def test_missing_paths_and_empty_folders(tmp_path: Path) -> None:
    done = chaoskit("validate", str(tmp_path / "nope.yaml"), str(tmp_path))
    assert done.returncode == ExitCode.INVALID
    assert "no such file or folder" in done.stdout and "no experiment files" in done.stdout


def test_vars_are_passed_through(root: Path) -> None:
    clock = str(root / "experiments" / "clock-skew.yaml")
    assert chaoskit("validate", "--var", "skew=-3m", clock).returncode == 0
    done = chaoskit("validate", "--var", "skew=0s", clock)
    assert done.returncode == 2 and "changes nothing" in done.stdout
    done = chaoskit("validate", "--var", "nonsense", clock)
    assert done.returncode == 2 and "NAME=VALUE" in done.stderr


def test_json_output_for_tools(root: Path, write: Write) -> None:
    bad = write("bad.yaml", "name: x\n")
    done = chaoskit("validate", "--format", "json", str(bad))
    report = json.loads(done.stdout)
    assert report["valid"] is False
    fields = {p["field"] for p in report["files"][0]["problems"]}
    assert {"targets", "steady_state", "faults"} <= fields


def test_usage_errors_exit_2() -> None:
    assert chaoskit("validate").returncode == ExitCode.INVALID
    assert chaoskit("frobnicate").returncode == ExitCode.INVALID
    assert chaoskit("schema", "nonsense").returncode == ExitCode.INVALID


def test_schema_is_json_schema_for_both_files() -> None:
    for what in ("experiment", "policy"):
        done = chaoskit("schema", what)
        assert done.returncode == 0
        schema = json.loads(done.stdout)
        assert schema["$schema"].startswith("https://json-schema.org/")
        assert schema["additionalProperties"] is False


def test_an_internal_error_exits_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No real input makes chaoskit crash (that is the point), so a bug is simulated here by
    # replacing the validate use-case with one that raises.
    import chaoskit.validate
    from chaoskit import cli

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(chaoskit.validate, "validate_paths", broken)
    monkeypatch.setattr(sys, "argv", ["chaoskit", "validate", "x.yaml"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == ExitCode.INTERNAL
    assert "internal error" in capsys.readouterr().err


@pytest.mark.parametrize(("given", "expected"), [(None, "system"), ("mimalloc", "mimalloc")])
def test_the_command_reads_samples_with_the_c_librarys_memory_pool(
    given: str | None, expected: str
) -> None:
    # The pool is chosen once, when pyarrow loads: a fresh interpreter runs the command, then
    # asks pyarrow which pool it got. A pool the user chose is kept.
    script = (
        "import sys\n"
        "from chaoskit.cli import main\n"
        "sys.argv = ['chaoskit', '--version']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "import pyarrow\n"
        "print(pyarrow.default_memory_pool().backend_name)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if given is not None:
        env["ARROW_DEFAULT_MEMORY_POOL"] = given
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60,
        check=True,
    )  # fmt: skip
    assert done.stdout.split()[-1] == expected


def test_rollback_patience_defaults_to_the_runners() -> None:
    """The command line does not import the runner to start faster, so it states the default
    again: the two must agree."""
    import inspect

    from chaoskit.cli import runs
    from chaoskit.runner.rollback import REVERT_PATIENCE

    assert inspect.signature(runs.rollback).parameters["patience"].default == REVERT_PATIENCE
