import dataclasses

import numpy as np
import pytest

from train.synth import albedo, occluders

SIZE = 256  # smaller than the generator's 512 to keep the tests quick; the code is size-agnostic


def _appearance(seed: int, **changes) -> albedo.Appearance:
    app = albedo.sample_appearance(np.random.default_rng(seed))
    return dataclasses.replace(app, **changes) if changes else app


def _with_type(fitzpatrick: int, n: int) -> list[albedo.Appearance]:
    rng = np.random.default_rng(fitzpatrick)
    found = []
    while len(found) < n:
        app = albedo.sample_appearance(rng)
        if app.fitzpatrick == fitzpatrick:
            found.append(app)
    return found


def test_same_seed_same_appearance_and_texture():
    a = albedo.make_albedo(albedo.sample_appearance(np.random.default_rng(7)), np.random.default_rng(8), SIZE)
    b = albedo.make_albedo(albedo.sample_appearance(np.random.default_rng(7)), np.random.default_rng(8), SIZE)
    assert np.array_equal(a, b)
    c = albedo.make_albedo(albedo.sample_appearance(np.random.default_rng(9)), np.random.default_rng(8), SIZE)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("seed", range(6))
def test_texture_shape_dtype_range(seed):
    tex = albedo.make_albedo(_appearance(seed), np.random.default_rng(seed), SIZE)
    assert tex.shape == (SIZE, SIZE, 3)
    assert tex.dtype == np.float32
    assert np.isfinite(tex).all()
    assert tex.min() >= 0.0 and tex.max() <= 1.0
    assert tex.std() > 0.01  # not a flat colour


def test_all_beard_and_scalp_styles_render():
    for style in albedo.BEARD_STYLES:
        for scalp in albedo.SCALP_STYLES:
            app = _appearance(3, beard_style=style, scalp=scalp)
            tex = albedo.make_albedo(app, np.random.default_rng(0), SIZE)
            assert np.isfinite(tex).all() and tex.min() >= 0.0 and tex.max() <= 1.0


def test_fitzpatrick_types_are_sampled_roughly_uniformly():
    rng = np.random.default_rng(0)
    counts = np.bincount([albedo.sample_appearance(rng).fitzpatrick for _ in range(600)], minlength=7)[1:]
    assert counts.min() > 60 and counts.max() < 140


def _cheek_luminance(tex: np.ndarray) -> float:
    values, weights = [], []
    for crop in albedo._atlas(tex.shape[0]).crops["face"]:
        w = crop.f["cheek"]
        sel = w > 0.5
        values.append(albedo.luminance(tex[crop.sl][sel]))
        weights.append(w[sel])
    return float(np.average(np.concatenate(values), weights=np.concatenate(weights)))


def test_type_one_skin_is_lighter_than_type_six_on_the_cheeks():
    light = [_cheek_luminance(albedo.make_albedo(a, np.random.default_rng(i), SIZE))
             for i, a in enumerate(_with_type(1, 4))]
    dark = [_cheek_luminance(albedo.make_albedo(a, np.random.default_rng(i), SIZE))
            for i, a in enumerate(_with_type(6, 4))]
    assert min(light) > 2.0 * max(dark)


def test_eye_albedo_has_a_dark_pupil_and_light_sclera():
    app = _appearance(1)
    coords = np.array([[0.0, 0.0], [0.0, np.radians(app.iris_deg) * 0.8], [0.0, 0.8]], np.float32)
    pupil, iris, sclera = albedo.eye_albedo(app, coords)
    assert pupil.max() < 0.02
    assert albedo.luminance(sclera) > 0.3
    assert albedo.luminance(iris) < albedo.luminance(sclera)
    coords_v = albedo.eye_coordinates()
    assert coords_v.shape[1] == 2 and np.isfinite(coords_v).all()


def _landmarks() -> np.ndarray:
    """A hand-made frontal iBUG-68 face in a 256 x 256 image (eyes 60 px apart)."""
    t = np.pi - np.arange(17) * np.pi / 16
    jaw = np.stack([128 + 70 * np.cos(t), 110 + 85 * np.sin(t)], 1)
    brow_r = [(72, 94), (82, 88), (94, 86), (106, 87), (117, 91)]
    brow_l = [(139, 91), (150, 87), (162, 86), (174, 88), (184, 94)]
    nose = [(128, 105), (128, 117), (128, 129), (128, 140), (114, 146), (121, 148), (128, 149), (135, 148),
            (142, 146)]
    eye_r = [(82, 110), (92, 105), (104, 105), (114, 110), (104, 115), (92, 115)]
    eye_l = [(142, 110), (152, 105), (164, 105), (174, 110), (164, 115), (152, 115)]
    mouth = [(103, 170), (111, 164), (121, 161), (128, 162), (135, 161), (145, 164), (153, 170), (145, 177),
             (136, 180), (128, 181), (120, 180), (111, 177), (106, 170), (120, 167), (128, 167), (136, 167),
             (150, 170), (136, 173), (128, 174), (120, 173)]
    lm = np.concatenate([jaw, brow_r, brow_l, nose, eye_r, eye_l, mouth]).astype(np.float32)
    assert lm.shape == (68, 2)
    return lm


def _frame(dtype) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.uniform(0.1, 0.6, (256, 256, 3)).astype(np.float32)
    if dtype == np.uint8:
        return (albedo.linear_to_srgb(img) * 255).astype(np.uint8)
    return img


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
@pytest.mark.parametrize("style", ["rect", "round", "cateye", "half", "rimless"])
def test_occluders_change_only_pixels_near_the_eyes_and_forehead(dtype, style):
    lm = _landmarks()
    app = _appearance(0, glasses=style, fringe=True, fringe_length=1.0, lens_tint=0.3)
    img = _frame(dtype)
    out = occluders.draw_occluders(app, img, lm, np.ones(68, bool), np.random.default_rng(0))
    assert out.dtype == img.dtype and out.shape == img.shape
    changed = np.any(out != img, axis=-1)
    assert changed.sum() > 200
    ys, xs = np.nonzero(changed)
    assert ys.max() <= lm[33, 1]  # nothing below the nose: mouth, chin, neck untouched
    margin = 6  # 0.1 inter-ocular distances: the temple arms end at the ears (landmarks 0 and 16)
    assert xs.min() >= lm[0, 0] - margin and xs.max() <= lm[16, 0] + margin
    # The glasses are drawn around the eyes, the fringe above the brows.
    eye_band = changed[95:125]
    assert eye_band.any()
    assert changed[: int(lm[17:27, 1].min())].any()


def test_occluders_without_glasses_or_fringe_leave_the_frame_unchanged():
    img = _frame(np.float32)
    app = _appearance(0, glasses="none", fringe=False)
    out = occluders.draw_occluders(app, img, _landmarks(), np.ones(68, bool), np.random.default_rng(0))
    assert np.array_equal(out, img)


def test_glasses_alone_stay_around_the_eyes():
    lm = _landmarks()
    img = _frame(np.float32)
    app = _appearance(0, glasses="rect", fringe=False)
    out = occluders.draw_occluders(app, img, lm, np.ones(68, bool), np.random.default_rng(0))
    ys, _ = np.nonzero(np.any(out != img, axis=-1))
    iod = 60.0
    assert ys.min() >= lm[36:48, 1].mean() - 0.6 * iod and ys.max() <= lm[36:48, 1].mean() + 0.6 * iod
