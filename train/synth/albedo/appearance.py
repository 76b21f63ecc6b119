"""One person's look: `sample_appearance(rng)` draws the `Appearance` (skin, hair, beard, brows,
make-up, eyes, glasses, fringe) that the texture painters, the eye shader and the occluders read.

Skin tones: the Fitzpatrick type I-VI is mapped to the individual typology angle (ITA = atan((L* - 50) /
b*), Chardon et al. 1991; type ranges as used by Del Bino & Bernerd 2013: I > 55 deg, II 41-55,
III 28-41, IV 10-28, V -30-10, VI < -30) with b* and a* in the ranges measured on human skin; the CIELAB
colour is converted to linear sRGB (D65).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from train.synth.albedo.colour import lab_to_linear_rgb

FITZPATRICK_ITA = {1: (55.0, 68.0), 2: (41.0, 55.0), 3: (28.0, 41.0), 4: (10.0, 28.0), 5: (-30.0, 10.0),
                   6: (-55.0, -30.0)}
FITZPATRICK_B = {1: (11.0, 16.0), 2: (13.0, 18.0), 3: (15.0, 20.0), 4: (17.0, 22.0), 5: (16.0, 22.0),
                 6: (10.0, 18.0)}
BEARD_STYLES = ("none", "stubble", "full", "goatee", "moustache", "chin_strap")
SCALP_STYLES = ("bald", "buzz", "short")
GLASSES_STYLES = ("none", "rect", "round", "cateye", "half", "rimless")

# Linear-RGB albedos.
HAIR_COLOURS = {
    "black": (0.018, 0.016, 0.015), "dark_brown": (0.045, 0.03, 0.022), "brown": (0.10, 0.062, 0.038),
    "light_brown": (0.2, 0.13, 0.075), "blond": (0.42, 0.31, 0.16), "platinum": (0.58, 0.52, 0.42),
    "auburn": (0.22, 0.075, 0.035), "red": (0.38, 0.12, 0.04),
}
IRIS_COLOURS = {
    "dark_brown": (0.025, 0.012, 0.007), "brown": (0.06, 0.03, 0.013), "hazel": (0.11, 0.075, 0.03),
    "amber": (0.17, 0.09, 0.025), "green": (0.07, 0.11, 0.05), "blue": (0.07, 0.13, 0.24),
    "grey": (0.14, 0.16, 0.18),
}
LIPSTICK_COLOURS = ((0.45, 0.02, 0.04), (0.55, 0.12, 0.2), (0.22, 0.02, 0.06), (0.3, 0.04, 0.03),
                    (0.5, 0.22, 0.18), (0.16, 0.03, 0.1), (0.6, 0.25, 0.3), (0.12, 0.04, 0.03))
EYESHADOW_COLOURS = ((0.12, 0.07, 0.04), (0.3, 0.18, 0.1), (0.03, 0.03, 0.035), (0.35, 0.15, 0.2),
                     (0.08, 0.12, 0.25), (0.1, 0.16, 0.08), (0.45, 0.33, 0.2), (0.2, 0.1, 0.15))
BLUSH_COLOURS = ((0.8, 0.3, 0.3), (0.85, 0.4, 0.3), (0.7, 0.25, 0.35), (0.6, 0.25, 0.15))
FRAME_COLOURS = ((0.015, 0.015, 0.015), (0.08, 0.04, 0.02), (0.25, 0.12, 0.05), (0.55, 0.42, 0.18),
                 (0.5, 0.5, 0.52), (0.35, 0.03, 0.03), (0.03, 0.05, 0.2), (0.2, 0.2, 0.22))


@dataclass(frozen=True)
class Appearance:
    fitzpatrick: int  # 1..6
    ita_deg: float
    skin_rgb: tuple[float, float, float]  # linear RGB base skin albedo
    redness: float  # flushed cheeks / nose / ears, 0..1
    dark_circles: float  # periorbital darkening, 0..1
    male: bool
    age: float  # years
    beard_style: str  # BEARD_STYLES
    beard_density: float  # 0..1
    beard_rgb: tuple[float, float, float]
    freckles: float  # 0..1 density
    age_spots: float  # 0..1
    lip_rgb: tuple[float, float, float]  # natural lip colour
    lipstick: float  # 0 (none) .. 1 opaque
    lipstick_rgb: tuple[float, float, float]
    eyeshadow: float
    eyeshadow_rgb: tuple[float, float, float]
    eyeliner: float
    blush: float
    blush_rgb: tuple[float, float, float]
    brow_rgb: tuple[float, float, float]
    brow_thickness: float  # half-height at the inner end, mm
    brow_density: float  # 0..1
    brow_arch: float  # mm
    brow_shift: float  # mm, up (+) or down
    iris_rgb: tuple[float, float, float]
    iris_deg: float  # iris radius as an angle from the eye's axis
    pupil_ratio: float  # pupil radius / iris radius
    sclera_rgb: tuple[float, float, float]
    scalp: str  # SCALP_STYLES
    hair_rgb: tuple[float, float, float]
    hair_recession: float  # mm the front hairline is raised
    temple_recession: float  # mm
    sideburn_mm: float
    glasses: str  # GLASSES_STYLES
    glasses_rgb: tuple[float, float, float]
    glasses_thickness: float  # frame thickness as a fraction of the inter-ocular distance
    lens_tint: float  # 0..1
    fringe: bool
    fringe_rgb: tuple[float, float, float]
    fringe_length: float  # 0 (at the hairline) .. 1 (down to the brows)
    fringe_slant: float  # -1..1 side sweep


def _tup(x) -> tuple[float, float, float]:
    return tuple(float(c) for c in np.clip(x, 0.0, 1.0))


def _skin_colour(fitz: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    ita = rng.uniform(*FITZPATRICK_ITA[fitz])
    b = rng.uniform(*FITZPATRICK_B[fitz])
    L = min(50.0 + b * np.tan(np.radians(ita)), 76.0)
    a = rng.uniform(6.0, 13.0) if fitz <= 4 else rng.uniform(7.0, 12.0)
    undertone = rng.uniform(-1.0, 1.0)  # + pink / cool, - olive / golden
    a += 2.5 * undertone
    b -= 2.0 * undertone
    return lab_to_linear_rgb((L, a, b)), float(ita)


def _pick(rng: np.random.Generator, names, probs):
    p = np.asarray(probs, float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _hair_colour(fitz: int, age: float, rng: np.random.Generator) -> np.ndarray:
    names = list(HAIR_COLOURS)
    if fitz <= 2:
        probs = [0.1, 0.22, 0.22, 0.16, 0.14, 0.04, 0.07, 0.05]
    elif fitz == 3:
        probs = [0.3, 0.35, 0.2, 0.08, 0.03, 0.01, 0.02, 0.01]
    else:
        probs = [0.65, 0.3, 0.04, 0.01, 0.0, 0.0, 0.0, 0.0]
    rgb = np.array(HAIR_COLOURS[_pick(rng, names, probs)]) * rng.uniform(0.8, 1.2, 3) ** 0.3
    rgb *= rng.uniform(0.8, 1.25)
    grey = np.clip((age - 40.0) / 35.0 + rng.normal(0, 0.15), 0.0, 1.0) ** 1.5
    return (1 - grey) * rgb + grey * rng.uniform(0.3, 0.6) * np.ones(3)


def sample_appearance(rng: np.random.Generator) -> Appearance:
    fitz = int(rng.integers(1, 7))
    skin, ita = _skin_colour(fitz, rng)
    male = bool(rng.random() < 0.5)
    age = float(18.0 + 62.0 * rng.beta(1.3, 2.0))  # adults, more young than old
    skin = skin * (1.0 - 0.002 * max(age - 40.0, 0.0) * np.array([0.0, 0.3, 1.0]))  # a little yellower

    hair = _hair_colour(fitz, age, rng)
    if male:
        beard = _pick(rng, BEARD_STYLES, [0.35, 0.25, 0.14, 0.1, 0.07, 0.09])
        scalp = _pick(rng, SCALP_STYLES, [0.12 + 0.25 * (age > 45), 0.38, 0.5])
        recession = float(np.clip(rng.normal((age - 25) * 0.5, 10), 0, 45))
        temple = float(rng.uniform(0, 20) + 0.3 * recession)
    else:
        beard = "none"
        scalp = _pick(rng, SCALP_STYLES, [0.03, 0.07, 0.9])
        recession = float(np.clip(rng.normal(0, 4), 0, 10))
        temple = float(rng.uniform(0, 6))
    beard_rgb = hair * rng.uniform(0.85, 1.2, 3) ** 0.5
    makeup = (not male and rng.random() < 0.65) or (male and rng.random() < 0.04)

    freckle_p = {1: 0.45, 2: 0.3, 3: 0.12, 4: 0.04, 5: 0.02, 6: 0.02}[fitz]
    freckles = float(rng.uniform(0.2, 1.0)) if rng.random() < freckle_p else 0.0
    age_spots = float(np.clip((age - 45) / 35, 0, 1) * rng.uniform(0.2, 1.0))

    if fitz <= 3:
        lip = skin * np.array([rng.uniform(0.85, 1.05), rng.uniform(0.42, 0.6), rng.uniform(0.48, 0.66)])
    else:
        lip = skin * np.array([rng.uniform(0.7, 0.95), rng.uniform(0.5, 0.72), rng.uniform(0.58, 0.8)])
    lip *= rng.uniform(0.7, 0.95) * (1.0 - 0.003 * max(age - 40.0, 0.0))

    iris_names = list(IRIS_COLOURS)
    if fitz <= 2:
        iris_p = [0.05, 0.2, 0.15, 0.05, 0.12, 0.3, 0.13]
    elif fitz == 3:
        iris_p = [0.2, 0.4, 0.2, 0.06, 0.06, 0.05, 0.03]
    else:
        iris_p = [0.6, 0.33, 0.05, 0.02, 0.0, 0.0, 0.0]
    iris = np.array(IRIS_COLOURS[_pick(rng, iris_names, iris_p)]) * rng.uniform(0.7, 1.15)

    brow_rgb = hair * rng.uniform(0.6, 0.95) if rng.random() < 0.85 else hair * rng.uniform(0.3, 0.6)
    glasses = _pick(rng, GLASSES_STYLES, [0.65, 0.12, 0.08, 0.05, 0.05, 0.05])
    fringe = bool(scalp == "short" and rng.random() < (0.45 if not male else 0.12))

    def colour(options):
        return np.array(options[int(rng.integers(len(options)))]) * rng.uniform(0.8, 1.2, 3)

    return Appearance(
        fitzpatrick=fitz,
        ita_deg=ita,
        skin_rgb=_tup(skin),
        redness=float(rng.uniform(0.0, 1.0) * (1.0 if fitz <= 3 else 0.5)),
        dark_circles=float(rng.uniform(0.1, 1.0) * (0.6 if fitz <= 2 else 1.0)),
        male=male,
        age=age,
        beard_style=beard,
        beard_density=float(rng.uniform(0.4, 1.0)),
        beard_rgb=_tup(beard_rgb),
        freckles=freckles,
        age_spots=age_spots,
        lip_rgb=_tup(lip),
        lipstick=float(rng.uniform(0.35, 0.9)) if makeup and rng.random() < 0.55 else 0.0,
        lipstick_rgb=_tup(colour(LIPSTICK_COLOURS)),
        eyeshadow=float(rng.uniform(0.2, 0.7)) if makeup and rng.random() < 0.5 else 0.0,
        eyeshadow_rgb=_tup(colour(EYESHADOW_COLOURS)),
        eyeliner=float(rng.uniform(0.4, 1.0)) if makeup and rng.random() < 0.5 else 0.0,
        blush=float(rng.uniform(0.1, 0.35)) if makeup and rng.random() < 0.45 else 0.0,
        blush_rgb=_tup(colour(BLUSH_COLOURS)),
        brow_rgb=_tup(brow_rgb),
        brow_thickness=float(rng.uniform(3.5, 6.0) if male else rng.uniform(2.5, 4.5)),
        brow_density=float(rng.uniform(0.55, 1.0)),
        brow_arch=float(rng.uniform(3.0, 9.0)),
        brow_shift=float(rng.uniform(-2.5, 3.0)),
        iris_rgb=_tup(iris),
        iris_deg=float(rng.uniform(24.0, 29.0)),
        pupil_ratio=float(rng.uniform(0.28, 0.45)),
        sclera_rgb=_tup(np.array([0.62, 0.57, 0.52]) * rng.uniform(0.8, 1.05) * rng.uniform(0.95, 1.05, 3)),
        scalp=scalp,
        hair_rgb=_tup(hair),
        hair_recession=recession,
        temple_recession=temple,
        sideburn_mm=float(rng.uniform(5.0, 40.0) if male else rng.uniform(0.0, 15.0)),
        glasses=glasses,
        glasses_rgb=_tup(colour(FRAME_COLOURS)),
        glasses_thickness=float(rng.uniform(0.025, 0.07)),
        lens_tint=float(rng.uniform(0.0, 0.5)) if rng.random() < 0.2 else 0.0,
        fringe=fringe,
        fringe_rgb=_tup(hair),
        fringe_length=float(rng.uniform(0.3, 1.0)),
        fringe_slant=float(rng.uniform(-1.0, 1.0)),
    )
