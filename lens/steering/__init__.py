"""Steering: change what the model writes by editing the residual stream entering one block (lens/steering/steer.py)."""
