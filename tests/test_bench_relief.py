"""bench-relief tells a model that reads relief from one that recalls an average face."""

import numpy as np
import pytest

from convert.bench_relief import band_table, scaled_test_set, score_scale, table
from train import metrics as M
from train.config import DataConfig, ModelConfig
from train.evaluate import iter_examples

N = 8


def _replay(examples):
    """A predict function that returns the given examples' relief, batch after batch, in order."""
    queue = list(examples)

    def predict(rgb):
        batch, queue[:] = queue[: len(rgb)], queue[len(rgb):]
        return (np.stack([ex.relief for ex in batch]), np.stack([ex.face for ex in batch]).astype(np.float32))

    return predict


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("relief")
    return {s: scaled_test_set(root / f"scale-{s}", s, N) for s in (1.0, 1.25)}


def test_the_scaled_set_holds_the_same_faces_with_deeper_relief(sets):
    plain = [ex for _, _, ex in iter_examples(sets[1.0], "test", DataConfig(), ModelConfig())]
    deep = [ex for _, _, ex in iter_examples(sets[1.25], "test", DataConfig(), ModelConfig())]
    assert len(plain) == len(deep) == N
    ratios = [M.relief_range(d.relief, d.face, detrend=True) / M.relief_range(p.relief, p.face, detrend=True)
              for p, d in zip(plain, deep)]
    assert 1.08 < np.median(ratios) < 1.35  # 1.16: the clip to the bins and the mask edge take some


def test_an_oracle_keeps_the_amplitude_and_recalling_the_plain_faces_loses_it(sets):
    data, model = DataConfig(), ModelConfig()
    plain = [ex for _, _, ex in iter_examples(sets[1.0], "test", data, model)]
    deep = [ex for _, _, ex in iter_examples(sets[1.25], "test", data, model)]
    oracle = score_scale(_replay(deep), sets[1.25], 1.25, data, model)
    recall = score_scale(_replay(plain), sets[1.25], 1.25, data, model)
    assert oracle.slope == pytest.approx(1.0, abs=0.01)
    assert oracle.amplitude_ratio == pytest.approx(1.0, abs=0.01)
    assert recall.slope < 0.92 and recall.amplitude_ratio < 0.9  # the failure the bench exists to show
    assert "| 1.25 |" in table([oracle, recall])
    assert oracle.slope_by_pose
    assert all(v == pytest.approx(1.0, abs=0.01) for v in oracle.slope_by_pose.values())
    assert "| × 1.25 |" in band_table([oracle, recall], "slope_by_pose", "head pose")
