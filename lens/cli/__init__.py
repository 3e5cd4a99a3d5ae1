"""Command line: ``python -m lens COMMAND``. Errors are one line on stderr, never a traceback.

One module per group of commands, each with a ``register(subparsers)``; ``common``
holds what they share. Nothing heavy is imported until a command runs, so
``python -m lens models`` starts without torch.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import LensError
from . import attention, attribution, causal, export, fitted, generate, logit_lens, models, projection, runs, suite
from . import circuits as circuits_commands
from . import weights as weights_commands
from . import steering as steering_commands
from . import probes as probe_commands
from . import anatomy as anatomy_commands
from . import explain as explain_commands
from . import sampling as sampling_commands
from . import talks as talk_commands
from .common import quiet_libraries, terminal_progress


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lens",
                                     description="LayerLens: look inside transformer LMs, layer by layer.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (models, logit_lens, fitted, generate, attention, projection, causal, attribution, export, runs, suite):
        group.register(sub)
    circuits_commands.register(sub)  # attribute, circuit (lens/circuits/)
    weights_commands.register(sub)  # neurons, neuron, heads-weights (lens/weights/)
    steering_commands.register(sub)  # steer (lens/steering/)
    probe_commands.register(sub)  # probe, vectors (lens/probes/, lens/steering/store.py)
    anatomy_commands.register(sub)  # anatomy, contrastive (lens/anatomy/)
    explain_commands.register(sub)  # explain (lens/explain/)
    sampling_commands.register(sub)  # sample (lens/sampling/)
    talk_commands.register(sub)  # talk show|export (lens/talks/)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        quiet_libraries()
        if vars(args).get("note") is not None and not vars(args).get("save_name"):
            raise LensError("--note goes with --save NAME")
        code = args.func(args)
        if code == 0 and vars(args).get("save_name"):
            runs.save_if_asked(args)
        return code
    except LensError as exc:
        terminal_progress.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        terminal_progress.close()
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last guard: one line, no traceback unless asked
        terminal_progress.close()
        if os.environ.get("LAYERLENS_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set LAYERLENS_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
