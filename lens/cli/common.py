"""What every command of ``python -m lens`` shares: arguments, reading prompts, the backend, output."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..errors import LensError


def quiet_libraries() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    # Set before transformers is imported (lazily, by the commands that need it).
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def model_args(p) -> None:
    p.add_argument("--model", default=None, help="bundled name, tiny-ARCH, folder, .gguf file or hub id (default: smollm2-135m)")
    p.add_argument("--prompt", default=None)
    p.add_argument("--prompt-file", default=None, metavar="PATH")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto (a GPU if any) or multi (a model spread over "
                                                   "every GPU) (default: cpu)")
    p.add_argument("--backend", default="local", choices=["local", "nnsight"],
                   help="local: hooks on the model in this process (default); nnsight: nnsight traces")
    p.add_argument("--remote", action="store_true",
                   help="with --backend nnsight: run on NDIF (the model is a hub id; needs NDIF_API_KEY)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached results")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own Python code to run")
    save_args(p)


def save_args(p) -> None:
    # dest "save_name", read with vars(): nnsight, once imported, gives every object a ``save`` method, which
    # argparse's Namespace would then answer for an argument named "save" that was not given.
    p.add_argument("--save", default=None, metavar="NAME", dest="save_name",
                   help="keep what this command computed as a saved run (python -m lens runs list)")
    p.add_argument("--note", default=None, help="with --save: a note kept with the run")


def read_prompt(args) -> str:
    if args.prompt is not None and args.prompt_file is not None:
        raise LensError("give --prompt or --prompt-file, not both")
    if args.prompt_file is not None:
        try:
            # Bytes, not read_text(): newline translation would change the prompt's tokens.
            return Path(args.prompt_file).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise LensError(f"cannot read {args.prompt_file}: it is not UTF-8 text") from None
        except OSError as exc:
            raise LensError(f"cannot read {args.prompt_file}: {exc.strerror or exc}") from None
    if args.prompt is None:
        raise LensError("give a prompt with --prompt TEXT or --prompt-file PATH")
    return args.prompt


def checked_prompt(args) -> str:
    from ..model.tokens import check_prompt

    return check_prompt(read_prompt(args))


class _Progress:
    """One progress line on stderr, rewritten in place; ``close()`` ends a line left open."""

    open = False

    def __call__(self, fraction: float, message: str) -> None:
        done = fraction >= 1.0
        print(f"\r[{fraction:4.0%}] {message:<60}", end="\n" if done else "", file=sys.stderr, flush=True)
        self.open = not done

    def close(self) -> None:
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False


terminal_progress = _Progress()


def backend(args):
    """The backend the arguments name; with ``--save``, one that records its results for the saved run. A command
    run before is answered from the disk cache without loading the model (lens/recall.py: no torch imported)."""
    from ..recall import for_command

    b = for_command(args, lambda: _backend(args))
    if vars(args).get("save_name"):
        from ..runs import RecordingBackend

        args.recording = b = RecordingBackend(b)
    return b


def _backend(args):
    from ..cache import ResultCache
    from ..engine_backend import local_backend
    from ..model.loading import load_model
    from ..model.registry import default_cache_root

    kind, remote = getattr(args, "backend", "local"), getattr(args, "remote", False)
    if remote and kind != "nnsight":
        raise LensError("--remote runs through nnsight: add --backend nnsight")
    cache = None if args.no_cache else ResultCache(default_cache_root() / "results")
    if remote:
        from ..model.remote import load_remote
        from ..engine_backend import nnsight_backend

        if not args.model:
            raise LensError("--remote needs --model, a hub id NDIF serves (e.g. meta-llama/Llama-3.1-8B)")
        return nnsight_backend(load_remote(args.model), cache, remote=True)
    if args.trust_remote_code:
        from ..hosting import hosting

        if hosting().demo:
            raise LensError("remote code cannot run on a demo server (LAYERLENS_DEMO): leave out --trust-remote-code")
    loaded = load_model(args.model, device=args.device, trust_remote_code=args.trust_remote_code,
                        progress=terminal_progress)
    if kind == "nnsight":
        from ..engine_backend import nnsight_backend

        return nnsight_backend(loaded, cache)
    return local_backend(loaded, cache)


def print_json(result) -> int:
    from ..serialize import to_json_dict

    print(json.dumps(to_json_dict(result), ensure_ascii=False))
    return 0


def bar(x: float, width: int = 30) -> str:
    return "█" * int(round(max(0.0, min(1.0, x)) * width))
