"""``make up`` (``python -m launcher``): the whole stack in the foreground; Ctrl-C stops it.

With ``--simulator`` (``make run``) the data simulator feeds it once everything is healthy.
Settings: ``launcher.settings`` (and the README's tables).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
from dataclasses import replace

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
    except ValueError as exc:  # a bad address or --only name
        parser.error(str(exc))
    simulator = None
    try:
        stack.start()
        print(stack.summary(), flush=True)
        if args.simulator:
            command = simulator_command(stack.settings, SIMULATOR_ARGS.read())
            print(f"feeding it: {shlex.join(command[1:])}", flush=True)
            simulator = supervise.spawn(command, cwd=ROOT, env=stack.child_env())
        while True:
            name = stack.wait({"simulator": simulator} if simulator else None)
            if name != "simulator":
                break
            print(f"the simulator exited with code {simulator.returncode}; the stack stays up "
                  "(Ctrl-C stops it)", flush=True)
            simulator = None
        if name is None:
            print("stopping everything", flush=True)
            return 0
        code = stack.processes[name].returncode
        print(f"{name} exited with code {code}; stopping everything. {stack.log_file(name)}:\n"
              f"{stack.log_tail(name)}", file=sys.stderr, flush=True)
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


if __name__ == "__main__":
    sys.exit(main())
