"""``python -m bench``: run a suite config (`bench.suite.runner`), ``python -m bench report`` to render its
results (`bench.suite.report`), or ``python -m bench readme`` to regenerate the README's Results table from them
(`bench.suite.headline`). ``python -m bench --help`` and ``python -m bench report --help`` list the flags."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bench.suite.config import ConfigError


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["report"]:
            from bench.suite import report

            report.main(argv[1:])
        elif argv[:1] == ["readme"]:
            from bench.suite import headline

            headline.main(argv[1:])
        else:
            from bench.suite import runner

            runner.main(argv)
    except ConfigError as error:
        raise SystemExit(f"config error: {error}") from None


if __name__ == "__main__":
    main()
