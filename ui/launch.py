"""`python -m ui.launch [streamlit options]`: the dashboard, with its default model warm.

``streamlit run app.py`` imports PyTorch and transformers and loads the model only
when the first browser asks (several seconds on a laptop). This starts that load,
and the home page's first result, on a background thread as the server starts, so
the first visitor waits for less of it; then the guided tour's charts, so a talk's
steps come from the cache, and UMAP's compilation (``LAYERLENS_WARM=home`` stops after
the home page). The model runs in a worker process of its own (lens/worker/, ``LAYERLENS_WORKER=1``
unless set otherwise), so the server draws its pages while PyTorch imports there; the warm start
loads it through that worker. The options go to ``streamlit run``.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app.py"


def warm() -> None:
    """Load the default model and compute what the home page shows first."""
    t0 = time.perf_counter()
    try:
        # The load first (in the model worker: torch imports there), then Streamlit's modules (ui.state).
        from ui.backends import HOSTING, default_model, preload

        model = default_model()
        loading = preload(model)
        from lens.examples import DEFAULT_PROMPT

        if HOSTING.demo:
            print(f"LayerLens: demo mode, offering {', '.join(HOSTING.models)}; prompts up to "
                  f"{HOSTING.limits.max_prompt_tokens} tokens", file=sys.stderr, flush=True)
        backend = loading.result()
        from ui.state import HOME_LENS  # after the load: Streamlit's runtime is up (its caches want it)

        backend.logit_lens(DEFAULT_PROMPT, HOME_LENS)
        import lens.figures.logit_lens  # noqa: F401  (plotly, for the first page's figure)
    except Exception as exc:  # the page will load it again and show the error there
        print(f"LayerLens: warm start failed ({exc}); the page will load the model", file=sys.stderr)
        return
    print(f"LayerLens: {model} loaded and the home page computed, "
          f"{time.perf_counter() - t0:.1f} s after launch", file=sys.stderr, flush=True)
    if os.environ.get("LAYERLENS_WARM", "tour") != "tour":
        return
    try:
        from lens.tour import STEPS, render_step

        for step in STEPS:
            render_step(backend, step)
        from lens.examples import EXAMPLES

        from lens.options import LensOptions
        from lens.views.logit_lens import lens_with_alternatives

        for text in EXAMPLES.values():  # the sidebar's examples, as the home page and the lens show them
            backend.logit_lens(text, HOME_LENS)
            lens_with_alternatives(backend, text, LensOptions())
        from lens.options import ProjectionOptions

        # UMAP compiles its code (numba) on its first call in a process: 10 s or more.
        backend.projection(DEFAULT_PROMPT, ProjectionOptions(method="umap"))
        from lens.views.steering import PRESETS, preset_options

        for name in PRESETS:  # a speaker's presets on the steering page (two generations and two lenses each)
            backend.steer(*preset_options(name, backend.info().n_layers))
    except Exception as exc:
        print(f"LayerLens: warming the tour failed ({exc}); its pages will compute their charts", file=sys.stderr)
        return
    print(f"LayerLens: the tour's {len(STEPS)} steps, the examples and the steering presets computed, UMAP compiled, "
          f"{time.perf_counter() - t0:.1f} s after launch",
          file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    from lens.logs import log_to_stderr

    log_to_stderr()
    from lens.errors import LensError
    from lens.hosting import hosting

    try:
        hosting()  # a wrong setting stops the server here, named, before any visitor sees it
    except LensError as exc:
        print(f"LayerLens: {exc}", file=sys.stderr)
        sys.exit(2)
    # The model in a child process: this one (Streamlit's server) never imports torch (ui/backends.py).
    os.environ.setdefault("LAYERLENS_WORKER", "1")
    from ui.backends import use_worker, worker

    if use_worker():
        worker().start()  # first: PyTorch imports there while this process imports Streamlit
    threading.Thread(target=warm, name="warm start", daemon=True).start()
    # The charts' libraries, imported here, once, before any visitor: plotly imports pandas lazily while it checks
    # a figure's data, and several first sessions doing that at once (their own threads) can each see the other's
    # half-imported pandas ("partially initialized module 'pandas' has no attribute 'Series'").
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    cli.main()


if __name__ == "__main__":
    main()
