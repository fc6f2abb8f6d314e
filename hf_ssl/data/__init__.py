"""Pools and batches: corpora and splits, images as pixel values, collators, the unlabeled sampler, input
validation, metrics.
"""
