"""Reading plotly figures back out of a Streamlit AppTest."""
import base64
import json

import numpy as np


def charts(at) -> list[dict]:
    """Every plotly chart on the page, as figure JSON."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def array(field) -> np.ndarray:
    """Plotly 7 stores arrays as base64 with a dtype and a shape ("31, 5")."""
    if isinstance(field, dict) and "bdata" in field:
        a = np.frombuffer(base64.b64decode(field["bdata"]), dtype=np.dtype(field["dtype"]))
        shape = field.get("shape")
        if isinstance(shape, str):
            shape = [int(n) for n in shape.split(",")]
        return a.reshape(shape) if shape else a
    return np.asarray(field, dtype=float)
