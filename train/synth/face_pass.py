"""One compiled pass over the face's window: interpolate, texture, shade, composite and label each pixel.

The rasteriser leaves, per pixel of the window, the nearest triangle and its perspective-correct
barycentrics. For each covered pixel this pass interpolates the vertex normal, UV and camera-frame
position, samples the albedo texture (bilinear, wrapping) or paints the eyeball procedurally, shades
(ambient + Lambert + Blinn-Phong per light), and writes radiance, exact depth and the mask label
straight into the frame, except where clothing hides the neck. Nothing is done per frame pixel
outside the window, and no per-pixel array is built in between.
"""

from __future__ import annotations

import numba
import numpy as np

from train.synth.albedo.eyes import eye_coordinates, eye_polar_at, eye_rgb_at
from train.synth.head import PART_EYE, PART_SKIN
from train.synth.sample import MASK_FACE, MASK_HEAD

EYE_SPECULAR, EYE_SHININESS = 0.6, 80.0  # wet eyes, teeth and tongue; skin draws its own


@numba.njit(cache=True, nogil=True)
def vertex_normals(vertices, triangles):
    """Area-weighted unit vertex normals (V, 3) float32 for smooth (Phong) shading."""
    acc = np.zeros((vertices.shape[0], 3), np.float64)
    for t in range(triangles.shape[0]):
        i0, i1, i2 = triangles[t, 0], triangles[t, 1], triangles[t, 2]
        v0, v1, v2 = vertices[i0], vertices[i1], vertices[i2]
        ax, ay, az = v1[0] - v0[0], v1[1] - v0[1], v1[2] - v0[2]
        bx, by, bz = v2[0] - v0[0], v2[1] - v0[1], v2[2] - v0[2]
        nx, ny, nz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
        for i in (i0, i1, i2):
            acc[i, 0] += nx
            acc[i, 1] += ny
            acc[i, 2] += nz
    out = np.empty((vertices.shape[0], 3), np.float32)
    for v in range(vertices.shape[0]):
        norm = max(np.sqrt(acc[v, 0] ** 2 + acc[v, 1] ** 2 + acc[v, 2] ** 2), 1e-12)
        for c in range(3):
            out[v, c] = acc[v, c] / norm
    return out


@numba.njit(cache=True, nogil=True, fastmath=True)
def phong_lobe(c, n):
    """c ** n for c in [0, 1] and n >= 8, as (1 - n (1 - c) / 8) ** 8 (~ exp(-n (1 - c))): within 0.035
    of the power everywhere, by three squarings instead of a power per light and pixel."""
    t = 1.0 - n * (1.0 - c) * 0.125
    if t <= 0.0:
        return 0.0 * t
    t *= t
    t *= t
    return t * t


@numba.njit(cache=True, nogil=True, fastmath=True)
def _texel(tex, x, y, out):
    """Bilinear sample of tex at continuous texel coordinates (texel centres at integers), wrapping."""
    size_y, size_x = tex.shape[0], tex.shape[1]
    fx, fy = np.floor(x), np.floor(y)
    ax, ay = x - fx, y - fy
    xa, ya = int(fx), int(fy)
    if not 0 <= xa < size_x:  # UVs stay within [0, 1] but for seams: wrap only then (a modulo is slow)
        xa %= size_x
    if not 0 <= ya < size_y:
        ya %= size_y
    xb, yb = xa + 1 if xa + 1 < size_x else 0, ya + 1 if ya + 1 < size_y else 0
    for c in range(3):
        top = tex[ya, xa, c] * (1 - ax) + tex[ya, xb, c] * ax
        bottom = tex[yb, xa, c] * (1 - ax) + tex[yb, xb, c] * ax
        out[c] = top * (1 - ay) + bottom * ay


@numba.njit(cache=True, nogil=True, fastmath=True)
def _face_pass(
    y0, x0, zbuf_inv, tri_win, bary_win,  # the rasterised window
    triangles, normals, points, tri_uv, tri_part, tri_face, eye_coords,  # the posed mesh
    texture, eye_params, sclera, iris,  # the identity's look
    skin_specular, skin_shininess, light_dirs, light_colours, ambient,  # the scene
    torso, radiance, depth, mask,  # the frame: torso (H, W) bool in; the rest written
):
    size = texture.shape[0]
    albedo = np.empty(3, np.float32)
    for wy in range(tri_win.shape[0]):
        y = wy + y0
        for wx in range(tri_win.shape[1]):
            t = tri_win[wy, wx]
            if t < 0:
                continue
            x = wx + x0
            is_face = tri_face[t]
            if torso[y, x] and not is_face:
                continue  # clothing hides the neck's cut end, never the face
            depth[y, x] = np.float32(1.0 / zbuf_inv[wy, wx])
            mask[y, x] = MASK_FACE if is_face else MASK_HEAD
            b0, b1, b2 = bary_win[wy, wx, 0], bary_win[wy, wx, 1], bary_win[wy, wx, 2]
            i0, i1, i2 = triangles[t, 0], triangles[t, 1], triangles[t, 2]
            nx = b0 * normals[i0, 0] + b1 * normals[i1, 0] + b2 * normals[i2, 0]
            ny = b0 * normals[i0, 1] + b1 * normals[i1, 1] + b2 * normals[i2, 1]
            nz = b0 * normals[i0, 2] + b1 * normals[i1, 2] + b2 * normals[i2, 2]
            n_len = max(np.sqrt(nx * nx + ny * ny + nz * nz), np.float32(1e-6))
            nx, ny, nz = nx / n_len, ny / n_len, nz / n_len
            # The unit vector from the surface point towards the camera.
            vx = -(b0 * points[i0, 0] + b1 * points[i1, 0] + b2 * points[i2, 0])
            vy = -(b0 * points[i0, 1] + b1 * points[i1, 1] + b2 * points[i2, 1])
            vz = -(b0 * points[i0, 2] + b1 * points[i1, 2] + b2 * points[i2, 2])
            v_len = max(np.sqrt(vx * vx + vy * vy + vz * vz), np.float32(1e-6))
            vx, vy, vz = vx / v_len, vy / v_len, vz / v_len
            part = tri_part[t]
            if part == PART_EYE:  # the eyeball's UV island is too small for an iris: paint it
                ex = b0 * eye_coords[i0, 0] + b1 * eye_coords[i1, 0] + b2 * eye_coords[i2, 0]
                ey = b0 * eye_coords[i0, 1] + b1 * eye_coords[i1, 1] + b2 * eye_coords[i2, 1]
                r, fibres = eye_polar_at(ex, ey)
                eye_rgb_at(r, fibres, eye_params[0], eye_params[1], sclera, iris, albedo)
            else:
                u = b0 * tri_uv[t, 0, 0] + b1 * tri_uv[t, 1, 0] + b2 * tri_uv[t, 2, 0]
                v = b0 * tri_uv[t, 0, 1] + b1 * tri_uv[t, 1, 1] + b2 * tri_uv[t, 2, 1]
                _texel(texture, u * size, v * size, albedo)
            specular = skin_specular if part == PART_SKIN else EYE_SPECULAR
            shininess = skin_shininess if part == PART_SKIN else EYE_SHININESS
            out0, out1, out2 = albedo[0] * ambient[0], albedo[1] * ambient[1], albedo[2] * ambient[2]
            for k in range(light_dirs.shape[0]):
                dx, dy, dz = light_dirs[k, 0], light_dirs[k, 1], light_dirs[k, 2]
                lambert = nx * dx + ny * dy + nz * dz
                if lambert <= 0.0:
                    continue  # facing away from this light: no diffuse, no highlight
                hx, hy, hz = dx + vx, dy + vy, dz + vz
                h_len = max(np.sqrt(hx * hx + hy * hy + hz * hz), np.float32(1e-6))
                cos_h = (nx * hx + ny * hy + nz * hz) / h_len
                spec = specular * phong_lobe(cos_h, shininess) if cos_h > 0.0 else 0.0
                out0 += (albedo[0] * lambert + spec) * light_colours[k, 0]
                out1 += (albedo[1] * lambert + spec) * light_colours[k, 1]
                out2 += (albedo[2] * lambert + spec) * light_colours[k, 2]
            radiance[y, x, 0] = out0
            radiance[y, x, 1] = out1
            radiance[y, x, 2] = out2


def face_pass(
    window, mesh, tri_face, points, identity, material, lighting, torso, radiance, depth, mask
) -> None:
    """Shade the rasterised `window` of the posed mesh `points` (V, 3) into radiance/depth/mask (full
    frame, written in place); `material` = (skin specular strength, skin shininess)."""
    app = identity.appearance
    iris_r = float(np.radians(app.iris_deg))
    _face_pass(
        window.y0, window.x0, window.zbuf_inv, window.tri, window.bary,
        mesh.triangles, vertex_normals(points, mesh.triangles), points.astype(np.float32), mesh.tri_uv,
        mesh.tri_part, tri_face, eye_coordinates(), identity.albedo,
        np.array([iris_r, iris_r * app.pupil_ratio], np.float32),
        np.asarray(app.sclera_rgb, np.float32), np.asarray(app.iris_rgb, np.float32),
        np.float32(material[0]), np.float32(material[1]),
        lighting.directions, lighting.colours, lighting.ambient,
        torso, radiance, depth, mask,
    )  # fmt: skip
