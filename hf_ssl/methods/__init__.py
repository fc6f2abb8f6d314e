"""Semi-supervised building blocks as pure functions and small classes: losses, thresholds, pseudo-label selection,
EMA teacher, contrastive adaptation, linear-probe head.
"""
