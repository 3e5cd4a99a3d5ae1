"""The model in a process of its own: the server draws its pages while PyTorch imports and the model loads.

``Worker`` starts ``python -m lens.worker.child``, which loads models and runs ``local_backend`` for each; a
``WorkerBackend`` answers the Backend protocol (lens/backend.py) by forwarding each call over a socket pair
(lens/worker/wire.py: pickled messages, rebuilt with a restricted unpickler), relaying progress lines and the
asker's place in the job queue back to the caller. Importing this package imports neither torch nor
transformers; the child does. ui/backends.py uses it when ``LAYERLENS_WORKER=1`` (set by ``python -m ui.launch``).
"""
__all__ = ["Worker", "WorkerBackend", "WorkerDied"]


def __getattr__(name: str):
    # On first use: the worker process itself (lens.worker.child) needs none of the server's side.
    if name in __all__:
        from . import client

        return getattr(client, name)
    raise AttributeError(name)
