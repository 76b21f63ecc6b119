"""The device side on aarch64, under qemu-user, against x86 on the same inputs (`make arm-check`).

    python -m tools.arm_check [--out out/arm] [--bundle bundle/default] [--clip out/quickstart/clip]
    python -m tools.arm_check --resolve-only     # the cheap part CI runs: aarch64 wheels resolve
    python -m tools.arm_check --no-fallback      # only the ai-edge-litert environment

The environments (qemu 10, an arm64 bookworm rootfs, each requirement set's aarch64 wheels) are built
and cached under OUT by tools/arm_env.py. In each:

1. Under emulation: the imports, bundle verification (firmware_app.bundle), --validate-config, the
   quick-start daemon on the clip (hooks off; its events read from the outbox), and the depth of one
   crop. The same daemon and crop run on x86; every track must get the same verdict, on a frame at most
   FRAME_TOL from x86's (scores within SCORE_REL_TOL of x86's, or one relief output step, when it is the
   same frame), and the crop's relief must agree within DEPTH_MEAN_TOL_STEPS on average over the face
   (both run the same int8 model with XNNPACK, whose x86 and ARM kernels round differently). The score
   tolerance is relative because the daemon's float face detectors give boxes that differ by up to
   0.04 px between the two CPUs, and that moves the crop: on the quick-start clip the per-frame scores
   differed by up to 1.4 mm (4.7 %) with identical decisions, while the same frame's crop from a
   fixed box is bit-identical.
2. The same again on the fallback a device without an ai-edge-litert wheel gets from deploy/install.sh:
   requirements/device-fallback.txt (tflite-runtime 2.14, numpy 1.x) in OUT/site-fallback-<hash>, where
   firmware_app.tflite must pick tflite_runtime, against the same set on x86 (--x86-fallback-python,
   out/tflrt: `make verify-runtimes`'s second runtime), with the same tolerances. Each environment is
   compared with its own runtime on x86: tflite-runtime and ai-edge-litert differ by more than two CPUs
   do (one crop's relief: ~2 output steps on average), which `make verify-runtimes` measures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from tools.arm_env import (
    ENVIRONMENTS,
    REPO,
    ArmCheckError,
    Runner,
    ensure_rootfs,
    ensure_site,
    find_qemu,
    resolve_wheels,
    step,
)

# Scores on the same frame: within one output step of the int8 relief (2.19 mm for bundle/default): a
# cell that rounds one step the other way moves a score by up to that much.
# The sequential test decides on the frame where the track's evidence crosses a bound; the runtimes'
# per-frame scores differ by about a millimetre, which can move that frame by one.
FRAME_TOL = 1
# One crop's relief, over the face cells: the two builds of XNNPACK requantise differently, so single
# cells differ by a few output steps (the int8 relief's scale, 2.2 mm for bundle/default); on average
# they must agree to within half a step.
DEPTH_MEAN_TOL_STEPS = 0.5
SCORE_REL_TOL = 0.10  # a deciding frame's score, relative to x86's (the crop moves with float boxes)
# The track's evidence when it decided (nats; the bounds are ±4.61). Not compared: the raw relief range
# (`relief_range_mm`), which no decision reads and which, over a flat medium whose face mask ends where
# the medium does, moved by 2.4 mm (6 output steps) between x86 and aarch64 under tflite-runtime.
LLR_TOL = 0.5
EMULATION_TIMEOUT_S = 86400.0


PROBE = (  # argv[1]: the TFLite runtime firmware_app.tflite must pick in this environment
    "import platform, sys, numpy, cv2, yaml, cryptography\n"
    "from firmware_app.tflite import runtime_name\n"
    "assert runtime_name() == sys.argv[1], f'firmware_app.tflite picks {runtime_name()}, not {sys.argv[1]}'\n"
    "print(platform.machine(), sys.version.split()[0], 'numpy', numpy.__version__, 'cv2', cv2.__version__,\n"
    "      runtime_name())\n"
)
RUNTIME = {"main": "ai_edge_litert", "fallback": "tflite_runtime"}
DEPTH_OF_ONE_CROP = (
    "import json, sys, cv2, numpy as np\n"
    "from firmware_app.bundle import load_bundle\n"
    "from firmware_app.depth import DepthEstimator\n"
    "b = load_bundle(sys.argv[1])\n"
    "rgb = cv2.imread(sys.argv[2])[..., ::-1]\n"
    "h, w = rgb.shape[:2]; s = min(h, w)\n"
    "crop = cv2.resize(np.ascontiguousarray(rgb[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]),\n"
    "                  (b.crop.input_size, b.crop.input_size), interpolation=cv2.INTER_AREA)\n"
    "r = DepthEstimator.of_bundle(b, 1).predict(crop)\n"
    "print(json.dumps({'relief': r.relief_mm.round(4).tolist(), 'face': r.face_prob.round(4).tolist()}))\n"
)


def relief_scale(bundle: Path) -> float:
    outputs = json.loads((bundle / "manifest.json").read_text())["depth_model"]["outputs"]
    return float(next(o["scale"] for o in outputs if o["name"] == "relief"))


def compare_depth(x86: dict, arm: dict, scale: float, name: str) -> str:
    """'' when the aarch64 relief of one crop agrees with x86 on the face cells; else the problem."""
    a, b = np.array(x86["relief"]), np.array(arm["relief"])
    face = np.array(x86["face"]) > 0.5
    if face.sum() < 10:
        face = np.ones_like(face)
    diff, grid = np.abs(a - b)[face] / scale, np.abs(a - b).mean() / scale
    print(f"  {name}: |Δ relief| over {int(face.sum())} face cells: mean {diff.mean():.2f}, "
          f"max {diff.max():.0f} output steps of {scale:.2f} mm (whole grid: mean {grid:.2f}); "
          f"tolerance: mean ≤ {DEPTH_MEAN_TOL_STEPS}", flush=True)  # fmt: skip
    if diff.mean() > DEPTH_MEAN_TOL_STEPS:
        return f"one crop's relief differs by {diff.mean():.2f} steps on average (> {DEPTH_MEAN_TOL_STEPS})"
    return ""


def daemon_config(out_dir: Path, clip: Path, bundle: Path) -> Path:
    """The quick start's config with its own outbox, no hooks, no panels, no wall-clock timeout."""
    cfg = yaml.safe_load((REPO / "firmware_app/configs/quickstart.yaml").read_text())
    cfg["camera"]["source"] = str(clip.resolve())
    cfg["depth"]["bundle"] = str(bundle.resolve())
    cfg["outbox"] = {"dir": str((out_dir / "outbox").resolve()), "drain_timeout_s": 0}
    cfg["hooks"] = []
    # A track's verdict is also bounded in wall-clock time (liveness.timeout_s), and emulation is ~100×
    # slower: both runs get a timeout no track reaches, so decisions depend on frames, not on speed.
    cfg.setdefault("liveness", {}).update(save_depth_dir="", timeout_s=EMULATION_TIMEOUT_S)
    path = out_dir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def decisions(outbox: Path) -> list[dict]:
    lines = [line for seg in sorted(outbox.glob("events-*.jsonl")) for line in seg.read_text().splitlines()]
    events = [json.loads(line) for line in lines if line.strip()]
    return [e for e in events if e.get("type", "decision") == "decision" and "decision" in e]


def run_daemon(run: Runner, out: Path, clip: Path, bundle: Path) -> tuple[list[dict], float]:
    d = out / run.name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    config = daemon_config(d, clip, bundle)
    run(["-m", "firmware_app", "run", "--config", str(config), "--validate-config"])
    t = time.monotonic()
    run(["-m", "firmware_app", "run", "--config", str(config)])
    return decisions(d / "outbox"), time.monotonic() - t


def _evidence_llr(event: dict):
    evidence = event.get("evidence")
    return evidence.get("llr") if isinstance(evidence, dict) else None


def compare(x86: list[dict], arm: list[dict], score_tol_mm: float) -> list[str]:
    """Problems (empty = the same verdict for every track, decided within FRAME_TOL frames of x86's, and
    where both decided on the same frame, the score within SCORE_REL_TOL of x86's or score_tol_mm and the
    track's evidence within LLR_TOL)."""
    def verdicts(events):
        return [(e.get("track_id"), e.get("decision")) for e in events]

    if verdicts(x86) != verdicts(arm):
        return [f"decisions differ: x86 {verdicts(x86)} vs aarch64 {verdicts(arm)}"]
    problems = []
    for a, b in zip(x86, arm, strict=True):
        track, fa, fb = a.get("track_id"), a.get("frame_id"), b.get("frame_id")
        if not (isinstance(fa, int) and isinstance(fb, int) and abs(fa - fb) <= FRAME_TOL):
            problems.append(f"track {track}: decided at frame {fb}, x86 at {fa} (more than {FRAME_TOL} "
                            "apart)")
            continue
        if fa != fb:
            continue
        sa, sb = a.get("score_mm"), b.get("score_mm")
        if isinstance(sa, (int, float)) and isinstance(sb, (int, float)):
            tol = max(score_tol_mm, SCORE_REL_TOL * abs(sa))
            if abs(sa - sb) > tol:
                problems.append(f"track {track}: score_mm {sa} vs {sb} (> {tol:.2f} mm)")
        la, lb = _evidence_llr(a), _evidence_llr(b)
        if isinstance(la, (int, float)) and not (isinstance(lb, (int, float)) and abs(la - lb) <= LLR_TOL):
            problems.append(f"track {track}: evidence {la} vs {lb} (tolerance {LLR_TOL})")
    return problems


def reference(x86: Runner, out: Path, bundle: Path, clip: Path, frame: Path) -> dict:
    """x86's depth of one crop and daemon decisions on the clip, in one environment."""
    depth = json.loads(x86(["-c", DEPTH_OF_ONE_CROP, str(bundle), str(frame)]).splitlines()[-1])
    decided, secs = run_daemon(x86, out, clip, bundle)
    print(f"  {x86.name:16s} {secs:6.0f} s: {decision_line(decided)}", flush=True)
    return {"depth": depth, "decisions": decided}


def check_environment(arm: Runner, env: str, x86_ref: dict, out: Path, bundle: Path, clip: Path,
                      frame: Path, key: str) -> list[str]:
    """One aarch64 environment against x86's reference (depth of one crop, daemon decisions): problems."""
    step(f"[{env}] emulated interpreter: {arm(['-c', PROBE, RUNTIME[env]]).strip()}  (qemu {arm.qemu})")
    t = step(f"[{env}] bundle verification on aarch64: python -m firmware_app.bundle {bundle} --trusted-key "
             f"{key}")
    verified = arm(["-m", "firmware_app.bundle", str(bundle), "--trusted-key", key]).strip()
    print("  " + verified.replace("\n", "\n  "), flush=True)
    step(f"[{env}]   {time.monotonic() - t:.0f} s; depth of one crop (the clip's middle frame, centre "
         "square)")
    depth = json.loads(arm(["-c", DEPTH_OF_ONE_CROP, str(bundle), str(frame)]).splitlines()[-1])
    depth_problem = compare_depth(x86_ref["depth"], depth, relief_scale(bundle), frame.name)
    step(f"[{env}] the quick-start daemon on aarch64 (after --validate-config)")
    got, secs = run_daemon(arm, out, clip, bundle)
    print(f"  {arm.name:16s} {secs:6.0f} s: {decision_line(got)}", flush=True)
    problems = [f"[{env}] {p}" for p in compare(x86_ref["decisions"], got, relief_scale(bundle))]
    return problems + ([f"[{env}] {depth_problem}"] if depth_problem else [])


def decision_line(events: list[dict]) -> str:
    return ", ".join(f"track {e.get('track_id')} {e.get('decision')} at frame {e.get('frame_id')} "
                     f"score {e.get('score_mm')}" for e in events) or "no decision"  # fmt: skip


def full_check(out: Path, bundle: Path, clip: Path, key: str, fallback_python: Path | None = None) -> int:
    """Each environment (the fallback too, given its x86 interpreter) against x86: 0 when all agree."""
    t0 = time.monotonic()
    if not (bundle / "manifest.json").is_file():
        raise ArmCheckError(f"no release bundle at {bundle}; build one (make convert) or pass --bundle")
    frames = sorted(clip.glob("*.png")) if clip.is_dir() else []
    if not frames:
        raise ArmCheckError(f"no clip frames in {clip}; render them with make qs-clip")
    if fallback_python is not None and not fallback_python.is_file():
        raise ArmCheckError(f"no x86 tflite-runtime interpreter at {fallback_python}: `make "
                            "out/tflrt/.installed` builds it (make arm-check does), or pass --no-fallback")
    qemu = find_qemu()
    rootfs = ensure_rootfs(out)
    x86s = {"main": Runner(name="x86_64")}
    if fallback_python is not None:
        x86s["fallback"] = Runner(name="x86_64-fallback", python=str(fallback_python))
    arms = {env: Runner(qemu, rootfs, ensure_site(out, env), f"aarch64-{env}".replace("-main", ""))
            for env in x86s}  # fmt: skip
    frame = frames[len(frames) // 2]
    step(f"x86 references: depth of one crop ({frame.name}) and the quick-start daemon on {clip} "
         f"({len(frames)} frames), in each environment")
    refs = {env: reference(x86, out, bundle, clip, frame) for env, x86 in x86s.items()}
    problems = [f"[{env}] x86 made no decision on the clip: nothing to compare"
                for env, r in refs.items() if not r["decisions"]]
    for env, arm in arms.items():
        problems += check_environment(arm, env, refs[env], out, bundle, clip, frame, key)
    verdict = ("FAILED: " + "; ".join(problems) if problems
               else f"OK: same decisions as x86 ({', '.join(arms)})")
    step(f"{verdict} (total {time.monotonic() - t0:.0f} s)")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.arm_check", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "out/arm")
    parser.add_argument("--bundle", type=Path, default=REPO / "bundle/default")
    parser.add_argument("--clip", type=Path, default=REPO / "out/quickstart/clip")
    parser.add_argument("--trusted-key", default=str(REPO / "keys/dev/signing.pub"),
                        help="public key the bundle is signed with (default: the development key)")
    parser.add_argument("--resolve-only", action="store_true",
                        help="only: do the aarch64 wheels resolve?")
    parser.add_argument("--no-fallback", dest="fallback", action="store_false",
                        help="skip the tflite-runtime fallback (requirements/device-fallback.txt)")
    parser.add_argument("--x86-fallback-python", type=Path, default=REPO / "out/tflrt/bin/python",
                        help="x86 interpreter with requirements/device-fallback.txt "
                             "(make out/tflrt/.installed)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        if args.resolve_only:
            for env in ENVIRONMENTS if args.fallback else ["main"]:
                print(f"{env}: requirements/{ENVIRONMENTS[env][0]}")
                wheels = resolve_wheels(args.out / f"resolve-{env}.json", env)
                for name, (version, url) in sorted(wheels.items()):
                    print(f"  {name:24s} {version:12s} {url.rsplit('/', 1)[-1]}")
            return 0
        return full_check(args.out, args.bundle, args.clip, args.trusted_key,
                          args.x86_fallback_python if args.fallback else None)
    except ArmCheckError as e:
        print(f"arm-check: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
