"""Front-end helpers shared by app.py and pages/: routing, state, model loading, widgets, error display."""
