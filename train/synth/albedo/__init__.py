"""Procedural skin albedo textures on the hm08 UV layout.

    python -m train.synth.albedo_sheet --sheet out/albedo_sheet.png  # 16 identities on the neutral head
    python -m train.synth.albedo_sheet --bench                       # ms per texture

`sample_appearance(rng)` draws the parameters of one person's look; `make_albedo(app, rng)` turns them
into a (size, size, 3) float32 linear-RGB texture for `head_mesh().tri_uv` (texel (i, j) is the surface
at u = j / size, v = i / size, the convention of `cv2.remap(tex, u * size, v * size)`).

How it stays fast (~7 ms per 512 texture): everything that depends only on the mesh is computed once
per texture size (atlas.py); per identity only arithmetic on its crops remains (numba kernels for the
big ones), plus random windows into its noise banks.

    colour.py      CIELAB / linear / sRGB conversions, luminance
    appearance.py  Appearance and sample_appearance (skin tones, hair, make-up, eyes, glasses)
    atlas.py       the per-size UV atlas: texel kinds, position map, region fields, noise banks
    texture.py     make_albedo: skin, freckles, make-up, lashes and brows, the inside of eyes and mouth
    hair.py        scalp hair and beards
    eyes.py        eyeball coordinates and eye_albedo, which renderers use on PART_EYE pixels

Occluders (glasses, fringes) are drawn on the rendered frame by `occluders.py`.
"""

from train.synth.albedo.appearance import (
    BEARD_STYLES,
    BLUSH_COLOURS,
    EYESHADOW_COLOURS,
    FITZPATRICK_B,
    FITZPATRICK_ITA,
    FRAME_COLOURS,
    GLASSES_STYLES,
    HAIR_COLOURS,
    IRIS_COLOURS,
    LIPSTICK_COLOURS,
    SCALP_STYLES,
    Appearance,
    sample_appearance,
)
from train.synth.albedo.atlas import (
    EYE_SUPERSAMPLE,
    HAIR_AXIS_Z,
    K_EYE,
    K_EYE_CAVITY,
    K_HEAD,
    K_MOUTH_CAVITY,
    K_NECK,
    K_NONE,
    K_TEETH,
    K_TONGUE,
    NECK_AXIS_Z,
)
from train.synth.albedo.atlas import _atlas as _atlas  # the sheet and the tests inspect its crops
from train.synth.albedo.colour import lab_to_linear_rgb, linear_to_srgb, luminance
from train.synth.albedo.eyes import eye_albedo, eye_coordinates
from train.synth.albedo.texture import make_albedo

__all__ = [
    "BEARD_STYLES", "BLUSH_COLOURS", "EYESHADOW_COLOURS", "EYE_SUPERSAMPLE", "FITZPATRICK_B",
    "FITZPATRICK_ITA", "FRAME_COLOURS", "GLASSES_STYLES", "HAIR_AXIS_Z", "HAIR_COLOURS", "IRIS_COLOURS",
    "K_EYE", "K_EYE_CAVITY", "K_HEAD", "K_MOUTH_CAVITY", "K_NECK", "K_NONE", "K_TEETH", "K_TONGUE",
    "LIPSTICK_COLOURS", "NECK_AXIS_Z", "SCALP_STYLES", "Appearance", "eye_albedo", "eye_coordinates",
    "lab_to_linear_rgb", "linear_to_srgb", "luminance", "make_albedo", "sample_appearance",
]
