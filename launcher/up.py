"""``make up`` (``python -m launcher``): the whole stack in the foreground; Ctrl-C stops it.

A process that exits on its own is started again after a wait that doubles with each crash
(``supervise.Restarts``); past STACK_RESTART_LIMIT crashes within STACK_RESTART_WINDOW_S it gives
up and stops everything. ``$SATLAS_RUN_DIR/stack.json`` says where each part listens and its PID,
rewritten after each restart. With ``--simulator`` (``make run``) the data simulator feeds it once
everything is healthy. Settings: ``launcher.settings`` (and the README's tables).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from launcher import supervise
from launcher.settings import NAMES, SIMULATOR_ARGS, StackSettings, connect_addr
from launcher.stack import ROOT, Stack, StackError, StackInterrupted, signal_pid


def simulator_command(s: StackSettings, args: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "tools.simulator", "--url", connect_addr(s.ingest_addr),
            "--orchestrator", connect_addr(s.orchestrator_addr), *shlex.split(args)]


def stop_simulator(p: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM first: it finishes with its summary."""
    if p is None or p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        signal_pid(p.pid, signal.SIGKILL, group=True)
        p.wait()


def write_state(stack: Stack) -> Path:
    """stack.json, replaced at once (a reader never sees half of it)."""
    path = Path(stack.settings.run_dir) / "stack.json"
    part = path.with_suffix(".json.part")
    part.write_text(json.dumps({"launcher": os.getpid(), **stack.state()}, indent=2))
    part.replace(path)
    return path


def say(line: str) -> None:
    print(line, flush=True)


def revive(stack: Stack, name: str, restarts: supervise.Restarts) -> bool:
    """Start ``name`` again after its wait, until it is healthy (True) or the limit is reached (False):
    crashes within the window, or failed starts in a row (a start may outlast the window).
    StackInterrupted on Ctrl-C/SIGTERM meanwhile."""
    failed = 0
    while True:
        wait = restarts.next_wait(name)
        if wait is None or failed >= restarts.limit:
            return False
        say(f"restarting {name} in {wait:g} s")
        if supervise.sleep_unless_stopped(wait):
            raise StackInterrupted(f"stopped while restarting {name}")
        try:
            process = stack.restart(name)
        except StackInterrupted:
            raise
        except StackError as exc:
            say(f"{name} did not come back: {(str(exc).splitlines() or ['?'])[0]}")
            failed += 1
            continue
        say(f"{name} is back (pid {process.pid if process else '?'})")
        write_state(stack)
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=lambda v: tuple(n.strip() for n in v.split(",") if n.strip()), default=(),
                        help=f"start just these, comma-separated (debugging): {','.join(NAMES)}")
    parser.add_argument("--simulator", action="store_true",
                        help="once all is up, feed it with the data simulator (flags: SIMULATOR_ARGS)")
    args = parser.parse_args(argv)
    supervise.block_signals()  # before any thread: only `wait` takes SIGINT/SIGTERM/SIGCHLD
    try:
        stack = Stack(replace(StackSettings.from_env(), only=args.only), echo=lambda line: print(line, flush=True))
    except ValueError as exc:  # a bad address or --only name, an open public front door
        print(f"make up: {exc}", file=sys.stderr)
        return 2
    simulator = None
    try:
        stack.start()
        write_state(stack)  # before the summary: whoever waits for that finds the file
        print(stack.summary(), flush=True)
        s = stack.settings
        restarts = supervise.Restarts(limit=s.restart_limit, window_s=s.restart_window_s)
        if args.simulator:
            command = simulator_command(stack.settings, SIMULATOR_ARGS.read())
            print(f"feeding it: {shlex.join(command[1:])}", flush=True)
            simulator = supervise.spawn(command, cwd=ROOT, env=stack.child_env())
        while True:
            name = stack.wait({"simulator": simulator} if simulator else None)
            if name is None:
                say("stopping everything")
                return 0
            if name == "simulator":
                say(f"the simulator exited with code {simulator.returncode}; the stack stays up (Ctrl-C stops it)")
                simulator = None
                continue
            say(f"{name} exited with code {stack.processes[name].returncode}; last lines of "
                f"{stack.log_file(name)}:\n{stack.log_tail(name, 8)}")
            if not revive(stack, name, restarts):
                print(f"{name} crashed more than {restarts.limit} times within {restarts.window_s:g} s (or did not "
                      f"come back {restarts.limit} times in a row); giving up "
                      f"and stopping everything. {stack.log_file(name)}:\n{stack.log_tail(name)}",
                      file=sys.stderr, flush=True)
                return 1
    except StackInterrupted as exc:
        print(f"stack: {exc}; stopping", file=sys.stderr)
        return 0
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_simulator(simulator)
        stack.stop()
        (Path(stack.settings.run_dir) / "stack.json").unlink(missing_ok=True)  # its PIDs are gone


if __name__ == "__main__":
    sys.exit(main())
