"""python -m convert.study --config convert/study/configs/full.yaml [--only v1,v2] [--docs docs/]

Trains, converts and measures the compression variants (convert/study/variants.py) on one config and
writes the table and chart (convert/study/report.py). Rerun the same command to resume after a kill.
Exit status: 0 done; 2 bad config, dataset or variant name.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# numpy's OpenBLAS spins one thread per core; beside TensorFlow's own pools (or another job at higher
# priority) that made a Tucker SVD of a 384-channel kernel take 44 s instead of 3 s. numpy only does
# small work here (decompositions, metrics), so one BLAS thread is enough. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="study YAML (convert/study/configs/)")
    p.add_argument("--only", default="", help="comma-separated variants (their parents run too)")
    p.add_argument("--docs", type=Path, help="also write compression_study.md/.png here (make study: docs/)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from convert.study.config import check_variants, load_study
    from train.config import ConfigError
    from train.synth.dataset_index import DatasetError

    try:
        cfg = load_study(a.config)
        only = check_variants([v for v in a.only.split(",") if v])
        from convert.study.runner import run_study  # TensorFlow loads here, after the arguments are checked

        results = run_study(cfg, only, a.docs, a.config)
    except (ConfigError, DatasetError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from convert.study.report import table

    print(table(results), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
