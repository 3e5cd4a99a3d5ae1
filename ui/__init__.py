"""Front-end helpers shared by app.py and pages/: state, model loading, error display."""
