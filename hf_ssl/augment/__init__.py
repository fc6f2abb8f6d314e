"""Weak and strong views: token-level text augmentation and batched kornia image augmentation."""
