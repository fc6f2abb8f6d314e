"""What the recipes share: argument parsing with ``--config file.yaml`` and the run drivers."""
