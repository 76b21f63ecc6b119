"""Scalp hair and beards, painted from the atlas' hairline and beard-margin fields."""

from __future__ import annotations

import numba
import numpy as np

from train.synth.albedo.appearance import BEARD_STYLES, Appearance
from train.synth.albedo.atlas import _Atlas, _Noise


def _paint_hair(app: Appearance, atlas: _Atlas, noise: _Noise, tex: np.ndarray) -> None:
    if app.scalp != "bald":
        cover = 0.97 if app.scalp == "short" else 0.6 + 0.25 * (app.hair_rgb[0] < 0.1)
        hair = np.asarray(app.hair_rgb, np.float32)
        for c in atlas.crops["scalp"]:
            f = c.f
            blotch, strands = noise("blotch", c.sl), noise("streak_u", c.sl)
            _k_scalp(tex[c.sl], f["d"], f["gf"], f["gt"], f["gs"], blotch, strands,
                     app.hair_recession, app.temple_recession, app.sideburn_mm, cover, hair)
    if app.beard_style == "none":
        return
    style = BEARD_STYLES.index(app.beard_style)
    beard = np.asarray(app.beard_rgb, np.float32)
    shadow = (beard * 0.6 + 0.2 * np.asarray(app.skin_rgb, np.float32)).astype(np.float32)
    for c in atlas.crops["beard"]:
        f = c.f
        _k_beard(tex[c.sl], f["full"], f["must"], f["chin"], f["strap"], noise("blotch", c.sl),
                 noise("fine", c.sl), noise("spot", c.sl), noise("streak_u", c.sl), style, app.beard_density,
                 beard, shadow)


# Per-texel compositing kernels (numba): one pass over a crop instead of a dozen numpy temporaries.


@numba.njit(cache=True, nogil=True, fastmath=True)
def _k_scalp(t, d, gf, gt, gs, blotch, strands, recession, temple, sideburn, cover, hair):
    h, w = d.shape
    for i in range(h):
        for j in range(w):
            x = d[i, j] - recession * gf[i, j] - temple * gt[i, j] + sideburn * gs[i, j] + 3.0 * blotch[i, j]
            a = min((x + 2.5) / 6.0, 1.0)
            if a <= 0.0:
                continue
            a *= cover
            s = 1.0 + 0.3 * max(min(strands[i, j], 2.0), -2.0)
            for k in range(3):
                t[i, j, k] += a * (hair[k] * s - t[i, j, k])


@numba.njit(cache=True, nogil=True, fastmath=True)
def _k_beard(t, full, must, chin, strap, blotch, fine, spot, strands, style, density, beard, shadow):
    # style: index into BEARD_STYLES ("none", "stubble", "full", "goatee", "moustache", "chin_strap")
    h, w = full.shape
    stubble = 0.55 if style == 1 else 0.2
    for i in range(h):
        for j in range(w):
            jag = 2.0 * blotch[i, j] + fine[i, j]
            fm = max(full[i, j], must[i, j])
            if style <= 2:
                m = fm
            elif style == 3:
                m = max(must[i, j], chin[i, j])
            elif style == 4:
                m = must[i, j]
            else:
                m = strap[i, j]
            if style == 1 or style == 3 or style == 4:  # stubble, alone or around a shaped beard
                a = min(max((fm + jag + 5.0) / 8.0, 0.0), 1.0)
                a *= min(max(0.3 * spot[i, j] + 0.7, 0.0), 1.0) * stubble * density
                for k in range(3):
                    t[i, j, k] += a * (shadow[k] - t[i, j, k])
            if style != 1:
                a = min(max((m + jag + 1.5) / 4.0, 0.0), 1.0) * (0.65 + 0.35 * density)
                s = 1.0 + 0.3 * max(min(strands[i, j], 2.0), -2.0)
                for k in range(3):
                    t[i, j, k] += a * (beard[k] * s - t[i, j, k])
