"""Widgets every view uses the same way: chart config and downloads of the numbers."""
from __future__ import annotations

import json

import streamlit as st

from lens.serialize import to_json_dict

# The chart's camera button saves a PNG at twice the screen resolution (for slides).
PLOT_CONFIG = {"toImageButtonOptions": {"format": "png", "scale": 2}}


def chart(fig, key: str, where=st, **kwargs):
    """A plotly chart with the shared config (in ``where``: a column, a container); returns what
    ``st.plotly_chart`` returns (the selection, for a chart that reruns on select)."""
    return where.plotly_chart(fig, key=key, config=PLOT_CONFIG, theme=None, **kwargs)


def download_json(result, name: str, label: str = "Download the numbers (JSON)", where=st) -> None:
    """A download button for the numbers behind a chart, as ``name``.json (written when clicked,
    not on every redraw)."""
    where.download_button(label, lambda: json.dumps(to_json_dict(result), ensure_ascii=False), file_name=f"{name}.json",
                          mime="application/json", key=f"dl-{name}")
