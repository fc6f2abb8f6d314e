"""Embedding geometry: encoding, kNN search, label propagation, choosing what to label, zero-shot priors."""
