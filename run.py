"""Entry point: ``python run.py [run|backtest|doctor|ticks] [--config PATH]``."""

import sys

from engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
