"""Errors that carry a message meant for the person using the tool."""


class LensError(Exception):
    """A problem the user can fix (bad prompt, unknown model, ...).

    The CLI prints its message as one line on stderr and the pages show it in
    the page; neither shows a traceback for it.
    """


class UnsupportedArchitecture(LensError):
    """The model's architecture has no adapter, or its modules are not where the adapter expects."""


class AttentionWeightsUnavailable(LensError):
    """The model's attention returned no weights (it was not loaded with eager attention)."""
