"""Attribution and circuits: attribution patching (AtP) checked against real patching, and edge attribution
patching (EAP) with the faithfulness of the circuit it keeps. Options and results: options.py, results.py;
the maths: atp.py, eap.py (every read, write and gradient through the engine)."""
