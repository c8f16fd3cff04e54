"""Local processes as parts: started from ``system.processes``, in a sandbox with a tmpfs or
under libfaketime when their faults need it, each a target while it runs."""

from __future__ import annotations

import os
import shutil

from ...drivers.base import Target
from ...drivers.process import process_target
from ...launch import LaunchError, sandbox
from ...launch.faketime import process_faketime
from ...model.system import ProcessSpec
from ..errors import BringUpError
from .parts import Parts, cannot_start, ready
from .spawn import spawn

__all__ = ["start_process"]


async def start_process(parts: Parts, spec: ProcessSpec, index: int) -> None:
    """Start ``spec`` (``system.processes[index]``), and wait until it is ready."""
    argv = [parts.render(arg) for arg in spec.command]
    env = {**os.environ, **{k: parts.render(v) for k, v in spec.env.items()}}
    cwd = parts.render(spec.cwd) if spec.cwd else None
    part, field = f"process '{spec.name}'", f"system.processes[{index}]"
    skew = parts.run_dir / "faketime" / spec.name if spec.faketime else None
    if skew is not None:
        try:
            env.update(process_faketime(skew))
        except LaunchError as error:
            raise cannot_start(part, str(error), f"{field}.faketime") from None
    if spec.tmpfs is not None:
        # The sandbox starts first and execs the program only then: look for it now, so a
        # program that is not there is refused as it is without a sandbox.
        if (cwd is None or os.path.isdir(cwd)) and not _findable(argv[0], cwd, env.get("PATH")):
            problem = f"{argv[0]}: no executable file by that name (on PATH, or from its cwd)"
            raise cannot_start(part, problem, f"{field}.command")
        argv = sandbox.command(argv, spec.tmpfs.path, spec.tmpfs.size)
    try:
        started = spawn(parts, spec.name, argv, env=env, cwd=cwd)
    except OSError as error:
        if error.filename is None:  # neither its program nor its directory: this machine's
            message = f"process {spec.name}: cannot start {argv[0]}: {error}"
            raise BringUpError(message) from None
        if cwd is not None and error.filename == cwd:
            raise cannot_start(part, f"cwd {_exec_problem(error)}", f"{field}.cwd") from None
        raise cannot_start(part, _exec_problem(error), f"{field}.command") from None
    except ValueError as error:  # a NUL byte in an argument or a variable
        raise cannot_start(part, str(error), field) from None
    if spec.ready is not None:
        await ready(spec.ready, parts.render, started.alive(), f"process {spec.name}")
    tmpfs = spec.tmpfs.path if spec.tmpfs else None
    process = started.process

    def target() -> list[Target]:
        if process.poll() is not None:
            return []
        return [
            process_target(
                process.pid, spec.name, dict(spec.labels), tmpfs, str(skew) if skew else None
            )
        ]

    parts.up.add_source(target)


def _exec_problem(error: OSError) -> str:
    """What exec (or the change into the working directory) said, as 'PATH: reason'."""
    reason = (error.strerror or str(error)).lower()
    return f"{error.filename}: {reason}" if error.filename is not None else reason


def _findable(program: str, cwd: str | None, path: str | None) -> bool:
    """Whether exec would find ``program`` as an executable file: on ``path`` (PATH), or
    relative to ``cwd`` when it names a directory."""
    if os.sep in program:
        program = os.path.join(cwd or "", program)
    return shutil.which(program, path=path if path is not None else os.defpath) is not None
