"""Knowledge distillation from the teacher: plain KD and the inheritance/exploration split.

kd (Hinton et al. 2015, per pixel): the task loss plus
    kd_weight · (T² · KL(softmax(t/T) ‖ softmax(s/T)) over stage I's bin logits
                 + w_relief · L1(student relief − teacher relief) over the true face mask)
The teacher's relief is a softer target than the label where the label is hard to reach (hair line,
occlusions); its bins' distribution says which neighbouring bins are plausible.

kd_ie (Huang et al. 2021, "Revisiting knowledge distillation: an inheritance and exploration
framework"): the student's stage I bottleneck (the coarsest encoder output) is split channel-wise in
two halves, both mapped by one shared 1×1 projection to the teacher's bottleneck width:
    inheritance = 1 − cos(P·inherit, teacher)   (per position, L2-normalised: learn what the teacher knows)
    exploration = cos²(P·explore, teacher)      (push the other half towards features the teacher lacks)
cos² rather than −cos: an anti-parallel feature is the teacher's feature again. One shared P, because
a second projection could satisfy the exploration term by itself without changing the student. The
projection is training-only; the exported student is the plain budgeted network.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers, ops

EPS = 1e-6


def kd_bins_loss(s_logits, t_logits, temperature: float):
    """T² · mean over pixels of KL(softmax(t/T) ‖ softmax(s/T)); 0 iff the distributions agree."""
    t_log = ops.log_softmax(t_logits / temperature, axis=-1)
    s_log = ops.log_softmax(s_logits / temperature, axis=-1)
    return temperature**2 * ops.mean(ops.sum(ops.exp(t_log) * (t_log - s_log), axis=-1))


def kd_relief_loss(s_relief, t_relief, face):
    """Mean |student − teacher| relief (mm) over the true face pixels."""
    diff = ops.abs(ops.squeeze(s_relief, -1) - ops.squeeze(t_relief, -1)) * face
    return ops.sum(diff) / ops.maximum(ops.sum(face), 1.0)


def _cos(a, b):
    a = a / ops.sqrt(ops.sum(a * a, axis=-1, keepdims=True) + EPS)
    b = b / ops.sqrt(ops.sum(b * b, axis=-1, keepdims=True) + EPS)
    return ops.sum(a * b, axis=-1)


def inheritance_loss(projected, t_feat):
    return ops.mean(1.0 - _cos(projected, t_feat))


def exploration_loss(projected, t_feat):
    return ops.mean(ops.square(_cos(projected, t_feat)))


def bottleneck(model: keras.Model):
    """Stage I's coarsest encoder output: the input of the first Recombinator upsampling."""
    ups = [lay for lay in model.layers if lay.name.startswith("s1_up")]
    return max(ups, key=lambda lay: int(lay.name[5:])).input


class Distiller(keras.Model):
    """Trains `student` (in place) against a frozen `teacher`; compile with train.train.compile_model."""

    def __init__(self, student: keras.Model, teacher: keras.Model, *, temperature: float, kd_weight: float,
                 w_relief: float, ie_weight: float = 0.0, explore_weight: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature, self.kd_weight, self.w_relief = temperature, kd_weight, w_relief
        self.ie_weight, self.explore_weight = ie_weight, explore_weight
        s_out = {"bins": student.output["bins"], "relief": student.output["relief"],
                 "logits": student.get_layer("s1_logits").output}
        t_out = {"logits": teacher.get_layer("s1_logits").output, "relief": teacher.output["relief"]}
        if ie_weight or explore_weight:
            feat, t_feat = bottleneck(student), bottleneck(teacher)
            half = feat.shape[-1] // 2
            proj = layers.Conv2D(t_feat.shape[-1], 1, use_bias=False, name="ie_proj")
            s_out["inherit"], s_out["explore"] = proj(feat[..., :half]), proj(feat[..., half:])
            t_out["feat"] = t_feat
        teacher.trainable = False
        self.s_view = keras.Model(student.input, s_out, name="student_view")
        self.t_view = keras.Model(teacher.input, t_out, name="teacher_view")

    def call(self, x, training=False):
        s = self.s_view(x, training=training)
        return {"bins": s["bins"], "relief": s["relief"]}

    def distill_terms(self, s: dict, t: dict, face) -> dict:
        terms = {"kd_bins": self.kd_weight * kd_bins_loss(s["logits"], t["logits"], self.temperature),
                 "kd_relief": self.kd_weight * self.w_relief * kd_relief_loss(s["relief"], t["relief"], face)}
        if "feat" in t:
            terms["inherit"] = self.ie_weight * inheritance_loss(s["inherit"], t["feat"])
            terms["explore"] = self.explore_weight * exploration_loss(s["explore"], t["feat"])
        return terms

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        t = self.t_view(x, training=False)
        with tf.GradientTape() as tape:
            s = self.s_view(x, training=True)
            y_pred = {"bins": s["bins"], "relief": s["relief"]}
            task = self.compute_loss(x=x, y=y, y_pred=y_pred)
            terms = self.distill_terms(s, t, y["relief"][..., 1])
            loss = task + ops.sum(ops.stack(list(terms.values())))
        weights = self.s_view.trainable_weights
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights, strict=True))
        # compiled metrics (stage I top-k, relief MAE) as in train.train; "loss" is the total here
        return {**self.compute_metrics(x, y, y_pred, sample_weight=None), "loss": loss, "task": task, **terms}
