"""python -m train --config train/configs/NAME.yaml [--set section.key=value ...]

Trains (or, after a kill, resumes) the run out/runs/<name>/ described in train/train.py.
"""

from __future__ import annotations

import argparse
import logging
import sys

from train.config import ConfigError, load_config
from train.synth.dataset_index import DatasetError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML file with data/model/train sections")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config field (YAML value), e.g. --set train.epochs=3")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.set)
        from train.train import train  # TensorFlow loads only once the config is known to be valid

        run_dir = train(cfg)
    except (ConfigError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"run directory: {run_dir}\nnext: python -m train.evaluate {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
