"""convert.runtime_check: the committed bundle's model run by a runtime in another process, scored by the
same evaluation as an in-process run (the check `make verify-runtimes` makes with tflite_runtime)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import write_fake_dataset

BUNDLE = Path(__file__).resolve().parents[1] / "bundle" / "default"
TFLRT = Path(__file__).resolve().parents[1] / "out" / "tflrt" / "bin" / "python"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return write_fake_dataset(tmp_path_factory.mktemp("rc") / "ds", n_train=2, n_val=2, n_test=10,
                              hw=(96, 128), per_shard=10)


def _config():
    from train.config import parse_config

    return parse_config(json.dumps(json.loads((BUNDLE / "manifest.json").read_text())["training_config"]))


@pytest.mark.slow
def test_two_processes_of_one_runtime_agree_with_the_in_process_evaluation(index, tmp_path):
    from convert.runtime_check import check
    from convert.verify import TFLitePredict
    from train.evaluate import evaluate

    result = check(BUNDLE, index, [sys.executable, sys.executable], tmp_path)
    a, b = result.scores
    assert a.runtime == b.runtime == "ai_edge_litert" and a.n == b.n > 0
    assert result.differing == result.max_steps == result.verdicts_flipped == 0 and result.crops == 10
    assert result.frame_llr_threshold is not None and result.evidence_flipped == 0  # the device's own verdict
    assert result.elements == 10 * 80 * 80 * 22
    cfg = _config()
    direct = evaluate(TFLitePredict(BUNDLE / "depth.tflite", 1), index, "test", data=cfg.data,
                      model=cfg.model)
    # the replay dequantises as the gate's TFLitePredict does
    assert a.mae_mm == pytest.approx(direct.bona_fide.mae_mm, abs=1e-6)
    assert a.attack_planar_p95_mm == pytest.approx(direct.attack.planar_range_p95_mm, abs=1e-6)
    assert "0 of 1408000 values differ" in result.table()


def test_replay_refuses_crops_it_was_not_given():
    from convert.runtime_check import Replay

    crops = np.zeros((4, 160, 160, 3), np.uint8)
    outputs = {"relief": np.zeros((4, 80, 80, 1), np.int8), "bins": np.zeros((4, 80, 80, 3), np.int8),
               "relief_quant": np.array([0.5, 0.0]), "bins_quant": np.array([1 / 256, -128.0])}
    replay = Replay(crops, outputs)
    relief, prob, bins = replay(crops[:2])
    assert relief.shape == (2, 80, 80) and np.allclose(bins, 0.5) and np.allclose(prob, 0.5)
    with pytest.raises(RuntimeError, match="other crops"):
        replay(crops[:2] + 1)


@pytest.mark.slow
@pytest.mark.skipif(not TFLRT.is_file(), reason="no out/tflrt venv: `make verify-runtimes` makes it")
def test_tflite_runtime_when_installed(index, tmp_path):
    from convert.runtime_check import check

    result = check(BUNDLE, index, [sys.executable, str(TFLRT)], tmp_path)
    litert, tflrt = result.scores
    assert (litert.runtime, tflrt.runtime) == ("ai_edge_litert", "tflite_runtime")
    assert abs(litert.mae_mm - tflrt.mae_mm) < 0.5
