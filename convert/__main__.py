"""python -m convert RUN_DIR --out DIR: int8 conversion, verification gate, liveness threshold, bundle.

    python -m convert out/runs/default --out out/bundle          (make convert)
    python -m convert out/runs/default --out out/bundle --n-calib 300 --max-eval-samples 512

Exit status: 0 bundle written; 1 refused by the verification gate; 2 bad input (run, dataset, options).
Details: convert/bundle.py (layout), convert/quantize.py, convert/verify.py (the gate), convert/liveness.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="training run directory (run.json + model.keras)")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--n-calib", type=int, default=300, help="validation crops for int8 calibration (≥ 100)")
    p.add_argument("--dataset", type=Path, help="dataset directory (default: the one the run was trained on)")
    p.add_argument("--max-eval-samples", type=int, default=0,
                   help="evaluate only the first N samples of test/val (0 = whole splits)")
    p.add_argument("--threads", type=int, default=2, help="LiteRT threads during verification")
    p.add_argument("--mirror-average", action="store_true",
                   help="the device runs each crop and its mirror and averages; the evidence is fitted so "
                        "(off by default: see the README's liveness section)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from convert.bundle import build_bundle  # TensorFlow loads here, after the arguments are checked
    from convert.quantize import ConvertError
    from convert.verify import GateError, comparison_text
    from firmware_app.bundle import BundleError
    from train.synth.dataset_index import DatasetError

    try:
        r = build_bundle(a.run_dir, a.out, n_calib=a.n_calib, dataset=a.dataset,
                         max_eval_samples=a.max_eval_samples, num_threads=a.threads,
                         mirror_average=a.mirror_average)
    except GateError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    except (ConvertError, DatasetError, BundleError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m, v, q = r.manifest, r.verify, r.quant
    live = m["liveness"]
    print(comparison_text(v))
    print(f"depth.tflite: {q.size_bytes / 1024:.1f} KB, {m['depth_model']['macs'] / 1e6:.1f} M MACs, "
          f"int8 {v.int8_latency_ms:.2f} ms/frame (1 thread, this machine); ops {q.op_counts()}")
    ev = live.get("evidence", {})
    print(f"liveness: evidence {ev.get('features')} fitted on {ev.get('calibration')}; per frame at LLR ≥ "
          f"{live.get('frame_llr_threshold')}: val BPCER {live['val_bpcer']}, "
          f"test APCER {live['test_apcer']}, test BPCER {live['test_bpcer']}, "
          f"test APCER by type {live.get('test_apcer_by_type')}; "
          f"relief threshold {live['threshold_mm']:.2f} mm (display)")
    for note in v.notes:
        print(f"note: {note}")
    print(f"bundle {m['version']} → {r.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
