"""Every example in the documentation works as printed (issue 16).

Each fenced block of README.md, docs/ and experiments/ (tests/docblocks.py finds and sorts
them) is used the way a reader would use it:

- an experiment is saved to a file and checked by ``chaoskit validate`` under the repository's
  policy (safety/default.yaml, what ``chaoskit validate`` uses from the repository root); a
  fragment (``blast_radius: {...}``) is checked merged into a small valid experiment;
- a policy is loaded as a policy (a fragment merged into safety/default.yaml first);
- a game-day plan is saved where plans live, experiments/gamedays/, so that its relative
  experiment paths resolve, and validated with the experiments it names;
- a command line is run for real when it needs no running system and touches nothing
  (``validate``, ``schema``, ``report``, ``history``, ``gate``, ``gameday status``: in a
  sandbox that mirrors the repository, with a run in reports/), and must exit as its comment
  says (``# exit 1``) or 0; any other ``chaoskit`` command must parse (the subcommand exists,
  every option is one it takes, every value converts) and answer ``--help``; other programs
  (pip, nox, pytest, python) are checked for what they name: extras, sessions, options, files.

A block that truly cannot be checked says so on the line above its fence:
``<!-- docs-check: skip, why -->``; those are counted, printed, and kept rare.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from docblocks import POLICY, ROOT, Block, blocks, classify, comment, read, split_commands
from typer.main import get_command
from typer.testing import CliRunner

from chaoskit.cli import app
from chaoskit.loader import LoadError, load_model
from chaoskit.safety.policy import Policy

BLOCKS = blocks()
NOT_YET: set[str] = set()
"""Documents another change is rewriting right now: their blocks are found and sorted like
any other, and skipped until that change lands (then remove them from here)."""
MAX_SKIPS = 3
"""``docs-check: skip`` is for the rare block that cannot be checked at all."""

RUN = "20260105-100000-docs"
"""The run a sandbox's reports/ holds, for commands that name one."""
PLACEHOLDERS = {
    '"$(ls -d reports/*/ | tail -1)"': f"reports/{RUN}/",  # docs/ci.md's workflow
    "<run id>": RUN,
    "<run>": RUN,
    "FILE": "experiments/quickstart.yaml",
    "EXPERIMENT": "experiments/quickstart.yaml",
    "PLAN": "experiments/gamedays/weekly.yaml",
}
"""What readers put in place of the placeholders the documents print (upper-case ones as
whole words); any other ``<...>`` fails the test until it is given a mapping here."""
_OPTIONAL = re.compile(r"\[(--?[^\]]+)\]")
"""``[--ratio 1.5]``: an optional part of a command line, checked as if given."""
_EXIT = re.compile(r"\bexit (?:code )?(\d+)\b")

REAL = {("validate",), ("schema",), ("report",), ("history",), ("gate",), ("gameday", "status")}
"""Commands run for real: they read files and write only into the sandbox's reports/."""
CHECKED_FILES = {("run",): "path", ("gameday", "run"): "plan", ("gameday", "schedule"): "plan"}
"""Commands not run whose file argument must still pass ``chaoskit validate``."""
SHELL_TOOLS = {"cat", "ls", "tail", "head", "echo", "cd"}
"""Programs whose use in a workflow needs no check of its own."""

runner = CliRunner()


def params(*kinds: str, base: str | None = None) -> list[Any]:
    """Blocks of these kinds (fragments: of ``base``), one test each, named ``file:line``."""
    chosen = [b for b in BLOCKS if b.kind in kinds or (b.kind == "fragment" and b.base == base)]
    return [pytest.param(b, id=b.id) for b in chosen]


def unless_skipped(block: Block) -> None:
    if block.skip is not None:
        pytest.skip(f"{block.id}: docs-check: skip, {block.skip}")
    if block.file in NOT_YET:
        pytest.skip(f"{block.id}: {block.file} is being rewritten by another change")


def invoke(*args: str) -> tuple[int, str]:
    """``chaoskit ARGS`` in-process: exit code and everything it printed."""
    done = runner.invoke(app, list(args))
    if done.exception is not None and not isinstance(done.exception, SystemExit):
        raise done.exception
    return done.exit_code, done.output


def validate(path: Path, *options: str, where: str) -> None:
    code, output = invoke("validate", "--policy", str(POLICY), *options, str(path))
    assert code == 0, f"{where}: chaoskit validate {path.name}: exit {code}\n{output}"


# Experiments, plans, policies and fragments.


@pytest.mark.parametrize("block", params("experiment", base="experiment"))
def test_experiment_validates_under_the_default_policy(block: Block, tmp_path: Path) -> None:
    unless_skipped(block)
    path = tmp_path / f"example{block.suffix}"
    path.write_text(block.render(), encoding="utf-8")
    validate(path, where=block.id)


@pytest.mark.parametrize("block", params("policy", base="policy"))
def test_policy_loads(block: Block, tmp_path: Path) -> None:
    unless_skipped(block)
    path = tmp_path / f"policy{block.suffix}"
    path.write_text(block.render(), encoding="utf-8")
    try:
        load_model(path, Policy)
    except LoadError as exc:
        pytest.fail(f"{block.id}:\n" + "\n".join(map(str, exc.problems)))


@pytest.mark.parametrize("block", params("plan"))
def test_plan_validates_where_plans_live(block: Block, tmp_path: Path) -> None:
    """Saved in experiments/gamedays/, as the documents say; its experiments resolve from there
    and are valid too (``chaoskit gameday run`` checks them all before running any)."""
    unless_skipped(block)
    experiments = shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    path = experiments / "gamedays" / f"docs-example{block.suffix}"
    path.write_text(block.render(), encoding="utf-8")
    validate(path, where=block.id)
    for name in block.document()["experiments"]:
        validate(path.parent / name, where=f"{block.id}: {name}")


# Command lines.


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that looks like the repository (its entries linked), with a reports/ of its
    own holding one finished run, so commands that read or write reports touch nothing real."""
    folder = tmp_path_factory.mktemp("repo")
    for entry in ROOT.iterdir():
        if entry.name not in {"reports", ".git"}:
            (folder / entry.name).symlink_to(entry)
    write_held_run(folder / "reports" / RUN)
    return folder


def write_held_run(folder: Path) -> None:
    """A run that HELD, as chaoskit writes it (its own verdict and result functions, on a
    probe that read the same value throughout)."""
    from chaoskit.exitcodes import ExitCode
    from chaoskit.load import ProbeSeries, RequestSamples
    from chaoskit.model import Experiment
    from chaoskit.runner.journal import Journal
    from chaoskit.runner.result import result_document
    from chaoskit.runner.running import Run
    from chaoskit.runner.verdict import Window, judge_run
    from chaoskit.safety.policy import Policy

    probe = {"type": "command", "command": ["true"], "value": "exit_code"}
    experiment = Experiment.model_validate(
        {
            "name": "docs-example",
            "targets": {"backends": {"kind": "proxy", "select": "backend-*"}},
            "steady_state": [
                {"name": "ready", "of": "probe", "probe": probe, "max": 0, "margin": "10%"}
            ],
            "faults": [{"type": "latency", "target": "backends", "latency": "300ms"}],
            "phases": {"warmup": "0s", "baseline": "60s", "fault": "60s", "recovery": "10s"},
            "hypothesis": {"trials": 1},
        }
    )
    readings = ProbeSeries("ready")
    for i in range(260):
        readings.add(i / 2, i / 2, 0.0)
    trial = Window(60.0, 120.0, 130.0)
    verdict = judge_run(experiment, RequestSamples(), (0.0, 60.0), [trial], concurrent=False,
                        probes={"ready": readings})  # fmt: skip
    assert verdict.verdict == "held", verdict
    wall = time.time() - 130
    folder.mkdir(parents=True)
    elsewhere = Path(tempfile.mkdtemp()) / "journal.jsonl"  # the run folder holds only its result
    run = Run(experiment, Policy(), folder, RUN, log=lambda _: None,
              journal=Journal.create(elsewhere, RUN))  # fmt: skip
    run.phases = [
        {"phase": "baseline", "start": 0.0, "end": 60.0, "wall": wall},
        {"phase": "fault", "start": 60.0, "end": 120.0, "wall": wall + 60, "trial": 1},
        {"phase": "recovery", "start": 120.0, "end": 130.0, "wall": wall + 120, "trial": 1},
    ]
    run.probes = {"ready": readings}
    result = result_document(
        run,
        source=None,
        outcome="held",
        code=ExitCode.HELD,
        ports={},
        trip=None,
        error=None,
        verdict=verdict,
    )
    run.journal.close()
    (folder / "result.json").write_text(json.dumps(result.to_json()), encoding="utf-8")


@pytest.mark.parametrize("block", params("commands"))
def test_command_lines_work(block: Block, sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unless_skipped(block)
    monkeypatch.chdir(sandbox)
    lines = block.commands()
    assert lines, f"{block.id}: a command block without a command"
    for line in lines:
        said = _EXIT.search(comment(line))
        expected = int(said[1]) if said else 0
        commands = split_commands(_OPTIONAL.sub(r"\1", substitute(line)))
        for i, argv in enumerate(commands):
            last = i == len(commands) - 1
            check_command(argv, expected if last else 0, where=f"{block.id}: `{line}`")


def substitute(line: str) -> str:
    for placeholder, value in PLACEHOLDERS.items():
        if placeholder.isupper():
            line = re.sub(rf"\b{placeholder}\b", value, line)
        else:
            line = line.replace(placeholder, value)
    assert not re.search(r"<[\w ]+>", line), f"a placeholder without a mapping in `{line}`"
    return line


def check_command(argv: list[str], expected: int, where: str) -> None:
    program = Path(argv[0]).name
    if program == "chaoskit":
        check_chaoskit(argv[1:], expected, where)
    elif program.startswith("python") and argv[1:3] == ["-m", "chaoskit"]:
        check_chaoskit(argv[3:], expected, where)
    elif program.startswith("python"):
        check_python(argv[1:], where)
    elif program.startswith("pip"):
        check_pip(argv[1:], where)
    elif program == "nox":
        check_nox(argv[1:], where)
    elif program == "pytest":
        check_pytest(argv[1:], where)
    elif program not in SHELL_TOOLS:
        pytest.fail(
            f"{where}: no check for `{program}`: add one to tests/test_doc_examples.py, or "
            "mark the block <!-- docs-check: skip, why -->"
        )


def check_chaoskit(args: list[str], expected: int, where: str) -> None:
    """Run it if it touches nothing; else it must parse and answer --help."""
    command, words = get_command(app), []
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        sub = command.commands.get(args[0])
        assert sub is not None, f"{where}: no command `{' '.join([*words, args[0]])}`"
        command, words, args = sub, [*words, args[0]], args[1:]
    if not words or {"--help", "-h", "--version"} & set(args):
        code, output = invoke(*words, *args)
        assert code == expected, f"{where}: exit {code}, expected {expected}\n{output}"
        return
    try:  # parse only: the command exists, takes every option given, and the values convert
        context = command.make_context(f"chaoskit {' '.join(words)}", list(args))
    except Exception as exc:
        pytest.fail(f"{where}: {exc}")
    if tuple(words) in REAL:
        code, output = invoke(*words, *args)
        assert code == expected, f"{where}: exit {code}, expected {expected}\n{output}"
        return
    code, output = invoke(*words, "--help")
    assert code == 0, f"{where}: `--help` exits {code}\n{output}"
    argument = CHECKED_FILES.get(tuple(words))
    if argument is not None:
        options = [f"--var={v}" for v in context.params.get("var") or []]
        validate(Path(context.params[argument]), *options, where=where)


def check_python(args: list[str], where: str) -> None:
    if args[:2] == ["-m", "venv"]:
        assert len(args) == 3, f"{where}: python -m venv takes a folder"
    elif args[:1] == ["-m"]:
        assert importlib.util.find_spec(args[1]) is not None, f"{where}: no module {args[1]}"
    else:
        assert (ROOT / args[0]).is_file(), f"{where}: no file {args[0]}"


def check_pip(args: list[str], where: str) -> None:
    """Only this project is installed: ``pip install -e '.[extra]'``; the extras exist."""
    assert args[:1] == ["install"], f"{where}: pip {' '.join(args)}"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for arg in args[1:]:
        if arg == "-e":
            continue
        wanted = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", arg)
        assert wanted, f"{where}: installs {arg}, not this project"
        for extra in (wanted[1] or "").split(","):
            assert not extra or extra in extras, f"{where}: no extra [{extra}] in pyproject"


def check_nox(args: list[str], where: str) -> None:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    sessions = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("session" in ast.unparse(d) for d in node.decorator_list)
    }
    assert args[:1] == ["-s"], f"{where}: nox {' '.join(args)}"
    for name in args[1:]:
        assert name in sessions, f"{where}: no nox session {name} (there are {sessions})"


def check_pytest(args: list[str], where: str) -> None:
    """The plugin's options (``--chaos-...``) exist and take the values given; paths exist."""
    import argparse

    import chaoskit.pytest_plugin

    parser = argparse.ArgumentParser(exit_on_error=False, add_help=False)

    class Group:
        def addoption(self, *names: str, **kwargs: Any) -> None:
            parser.add_argument(*names, **kwargs)

    class Parser(Group):
        def getgroup(self, *_: Any, **__: Any) -> Group:
            return Group()

        def addini(self, *_: Any, **__: Any) -> None:
            pass

    chaoskit.pytest_plugin.pytest_addoption(Parser())  # type: ignore[arg-type]
    try:
        _, rest = parser.parse_known_args(args)
    except (argparse.ArgumentError, SystemExit) as exc:
        pytest.fail(f"{where}: {exc}")
    unknown = [word for word in rest if word.startswith("--chaos")]
    assert not unknown, f"{where}: the plugin has no option {unknown}"
    takes_value = {"-k", "-m", "-p", "-n", "--numprocesses", "--maxfail", "--durations"}
    for before, word in zip(["", *rest], rest, strict=False):
        if not word.startswith("-") and before not in takes_value:
            assert (ROOT / word).exists(), f"{where}: no {word}"


# What was found, and what was left out.


def test_blocks_are_found_and_sorted() -> None:
    kinds = Counter(b.kind for b in BLOCKS)
    assert kinds["experiment"] >= 1 and kinds["plan"] >= 1 and kinds["policy"] >= 1
    assert kinds["fragment"] >= 5 and kinds["commands"] >= 5
    assert len({b.id for b in BLOCKS}) == len(BLOCKS)


def test_skipped_blocks_are_counted_and_rare(capsys: pytest.CaptureFixture[str]) -> None:
    skipped = [b for b in BLOCKS if b.skip is not None]
    checked = [b for b in BLOCKS if b.kind != "other" and b.skip is None]
    waiting = [b for b in checked if b.file in NOT_YET]
    with capsys.disabled():
        print(f"\ndoc blocks: {len(BLOCKS)} ({dict(Counter(b.kind for b in BLOCKS))}); "
              f"checked {len(checked) - len(waiting)}, waiting for their documents "
              f"{len(waiting)}, marked docs-check: skip {len(skipped)}")  # fmt: skip
        for block in skipped:
            print(f"  skipped {block.id}: {block.skip}")
    assert len(skipped) <= MAX_SKIPS, [b.id for b in skipped]


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in BLOCKS if b.lang == "python"])
def test_python_compiles(block: Block) -> None:
    unless_skipped(block)
    compile(block.text, block.id, "exec")


# The machinery itself.


def test_blocks_are_read_with_their_line_info_string_and_skip_marker(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n```yaml\nphases: {fault: 10s}\n```\n\n- a list item:\n\n"
        "  ```sh\n  chaoskit validate \\\n    experiments/\n  ```\n\n"
        "<!-- docs-check: skip, needs a real database -->\n\n````console\n$ chaoskit schema\n"
        "{...}\n````\n\n```\nplain\n```\n"
    )  # fmt: skip
    found = read(page, tmp_path)
    assert [(b.id, b.info, b.kind, b.skip) for b in found] == [
        ("page.md:3", "yaml", "fragment", None),
        ("page.md:9", "sh", "commands", None),
        ("page.md:16", "console", "commands", "needs a real database"),
        ("page.md:21", "", "other", None),
    ]
    assert found[1].commands() == ["chaoskit validate  experiments/"]
    assert found[2].commands() == ["chaoskit schema"]


def test_fragments_are_merged_into_their_base() -> None:
    phases = Block("x.md", 1, "yaml", "phases: {fault: 10s}\n", *classify("yaml", "phases: {}"))
    assert phases.document()["phases"] == {"fault": "10s"}
    assert phases.document()["faults"]  # the base's
    text = "steady_state:\n- {name: errors, of: error_rate, max: 5%}\n- {name: x, of: throughput}\n"
    metrics = Block("x.md", 1, "yaml", text, "fragment", "experiment").document()["steady_state"]
    assert [(m["name"], m.get("max")) for m in metrics] == [
        ("p95_latency", None), ("errors", "5%"), ("x", None)
    ]  # fmt: skip
    text = "max_blast_radius: {fraction: 20%}\n"
    assert classify("yaml", text) == ("fragment", "policy")
    policy = Block("x.md", 1, "yaml", text, "fragment", "policy").document()
    assert policy["max_blast_radius"] == {"fraction": "20%"} and policy["require_abort"]
    assert classify("yaml", "version: 1\n" + text) == ("policy", None)


def test_commands_are_split_and_placeholders_filled() -> None:
    line = 'a x && b "y z" | c > out.txt; d "$(ls -d reports/*/ | tail -1)" # exit 1'
    assert split_commands(line) == [
        ["a", "x"], ["b", "y z"], ["c"], ["d", "$(ls -d reports/*/ | tail -1)"]
    ]  # fmt: skip
    assert comment(line) == "exit 1" and comment("echo '# not one'") == ""
    assert substitute("chaoskit gate reports/<run>/ FILE") == (
        f"chaoskit gate reports/{RUN}/ experiments/quickstart.yaml"
    )
    with pytest.raises(AssertionError, match="without a mapping"):
        substitute("chaoskit report reports/<some run>/result.json")


def test_a_data_block_that_does_not_parse_is_checked_not_taken_for_text() -> None:
    broken = next(b for b in BLOCKS if b.kind == "experiment")
    text = broken.text.replace("faults:", "faults: [", 1)
    assert classify(broken.lang, text) == ("experiment", None)
