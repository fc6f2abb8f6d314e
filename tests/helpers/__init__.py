"""Plain helpers shared by the tests and by the scripts the multi-process tests launch.

- `helpers.tiny`: the tiny word vocabulary, tiny random BERTs and keyword-text pools built in the tests.
- `helpers.mp_launch`: run a script as several CPU processes (gloo) or as one.
- ``mp_*_script.py``: the scripts those tests launch; ``mp_audit_run.py`` records which files a recipe writes.

Fixtures built from these (``tokenizer``, ``pools``, the real-asset fixtures) live in ``tests/conftest.py``.
"""
