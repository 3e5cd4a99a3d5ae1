"""Interventions: edits at named sites (edits.py) and the experiments built from them (patching, ablation).

An edit is a plain function ``edit(activation, call) -> activation`` for one site; the engine
(lens/engine/) applies it. Adding an intervention is writing one such function and a view entry.
"""
