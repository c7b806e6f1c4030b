"""``python -m ropebook.experiments <name> [options]``: dispatch to an experiment's ``main(argv)``.

Add an experiment by adding its module to ``EXPERIMENTS``.
"""

import importlib
import sys

EXPERIMENTS = {
    "compare": "ropebook.experiments.runner",  # position schemes on stdlib bytes (ch-crope)
    "lrpe-recall": "ropebook.experiments.lrpe_recall",  # LRPE members on a recall task (ch-linear-attention)
}


def _main(argv: list[str]) -> int:
    if not argv or argv[0] not in EXPERIMENTS:
        names = ", ".join(EXPERIMENTS)
        got = argv[0] if argv else "nothing"
        print(f"usage: python -m ropebook.experiments <name> [options]; name must be one of: {names}; got {got}", file=sys.stderr)
        return 2
    return importlib.import_module(EXPERIMENTS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
