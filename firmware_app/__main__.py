"""facedepth device daemon.

    python -m firmware_app run --config C [--validate-config]   the daemon (SIGTERM/SIGINT stop it cleanly)
    python -m firmware_app predict IMAGE --bundle B [--out DIR] [--ply F]  crop box, depth, mask, evidence
    python -m firmware_app profile --config C [--frames N | --seconds S] [--plot P]  latency, FPS, RSS
    python -m firmware_app config                                every config field, default and description

Exit status: 0 done, 1 runtime failure, 2 bad config / input, 3 unusable bundle or model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from firmware_app.config import Config, ConfigError, describe, load_config

log = logging.getLogger("firmware_app")

EXIT_CONFIG, EXIT_BUNDLE = 2, 3


class UsageError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def _setup_logging(level: str = "INFO", file: str = "") -> None:
    try:
        handler = logging.FileHandler(file) if file else logging.StreamHandler(sys.stderr)
    except OSError as e:
        raise UsageError(f"config: logging.file {file}: cannot open ({e.strerror or e}); create its "
                         "directory or fix the path ('' = stderr)", EXIT_CONFIG) from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _config(path) -> Config:
    try:
        return load_config(path)
    except ConfigError as e:
        raise UsageError(f"config: {e}", EXIT_CONFIG) from None


def _bundle(path, trusted_keys):
    """The bundle, verified against `trusted_keys` (the config's depth.trusted_keys): the device's check."""
    from firmware_app.bundle import BundleError, load_bundle

    if not path:
        raise UsageError("no bundle: set depth.bundle in the config (or --bundle)", EXIT_CONFIG)
    try:
        return load_bundle(path, tuple(trusted_keys))
    except BundleError as e:
        raise UsageError(f"bundle: {e}", EXIT_BUNDLE) from None


def _outbox_ready(directory: str) -> None:
    """The outbox must be creatable and writable before anything decides (events are written first)."""
    path = Path(directory)
    try:
        (path / "cursors").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"config: outbox.dir {path}: cannot create it ({e.strerror or e}); create it and "
                         "give the daemon's user write access, or choose another directory",
                         EXIT_CONFIG) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"config: outbox.dir {path}: not writable by this user; fix its owner or "
                         "permissions", EXIT_CONFIG)


def _build_daemon(cfg: Config, bundle, **kwargs):
    from firmware_app.daemon import Daemon
    from firmware_app.depth import DepthModelError
    from firmware_app.hooks import make_hook

    _outbox_ready(cfg.outbox.dir)
    try:
        return Daemon(cfg, bundle, [make_hook(h) for h in cfg.hooks], **kwargs)
    except (DepthModelError, ValueError, RuntimeError, FileNotFoundError) as e:
        raise UsageError(f"model: {e}", EXIT_BUNDLE) from None
    except OSError as e:
        raise UsageError(f"outbox {cfg.outbox.dir}: {e.strerror or e}", 1) from None


def _install_signals(daemon) -> None:
    def handler(signum, _frame):
        log.info("%s: stopping", signal.Signals(signum).name)
        daemon.request_stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_run(args) -> int:
    cfg = _config(args.config)
    if args.validate_config:
        bundle = _bundle(cfg.depth.bundle, cfg.depth.trusted_keys) if cfg.depth.bundle else None
        print(
            f"{args.config}: ok ({len(cfg.hooks)} hook(s), camera {cfg.camera.type}"
            + (f", bundle {bundle.version or bundle.root}" if bundle else ", no bundle set")
            + ")"
        )
        return 0
    _setup_logging(cfg.logging.level, cfg.logging.file)
    daemon = _build_daemon(cfg, _bundle(cfg.depth.bundle, cfg.depth.trusted_keys))
    _install_signals(daemon)
    for hook in daemon.dispatcher.hooks if daemon.dispatcher else ():
        hook.attach(daemon)  # hooks that also report state (MQTT with Home Assistant discovery)
    server = None
    if cfg.http.enabled:
        from firmware_app.http_server import StatusServer

        try:
            server = StatusServer.from_config(daemon, cfg.http).start()
        except OSError as e:
            log.error("status server on %s:%d not started: %s", cfg.http.host, cfg.http.port, e)
    try:
        return daemon.run()
    finally:
        if server:
            server.close()
        log.info("stopped after %d frames", daemon.profiler.frames)


def cmd_predict(args) -> int:
    import cv2

    from firmware_app.camera import Frame
    from firmware_app.image_file import ImageFileError, read_rgb
    from firmware_app.panels import decision_panel
    from firmware_app.pipeline import Pipeline
    from firmware_app.profiling import Profiler
    from firmware_app.signing import read_keys

    _setup_logging("WARNING")
    try:
        rgb = read_rgb(args.image)
    except ImageFileError as e:
        raise UsageError(str(e), EXIT_CONFIG) from None
    bgr = rgb[..., ::-1]
    cfg = _config(args.config) if args.config else Config()
    try:
        keys = read_keys(args.trusted_key) + list(cfg.depth.trusted_keys)
    except ValueError as e:
        raise UsageError(f"--trusted-key: {e}", EXIT_CONFIG) from None
    bundle = _bundle(args.bundle or cfg.depth.bundle, keys)
    try:
        pipeline = Pipeline.from_bundle(bundle, cfg, Profiler())
        result = pipeline.process(Frame(rgb, time.monotonic(), 0))
    except (ValueError, RuntimeError, FileNotFoundError) as e:  # DepthModelError is a ValueError
        raise UsageError(f"model: {e}", EXIT_BUNDLE) from None
    threshold = pipeline.liveness.scorer.threshold_mm
    out = Path(args.out or Path(args.image).with_suffix("").name + "_depth")
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    cv2.imwrite(str(out / f"{stem}.png"), decision_panel(result, threshold)[..., ::-1])
    arrays = {"threshold_mm": np.float32(threshold)}
    if result.face:
        t = result.crop.transform
        score = result.liveness.score
        arrays.update(
            detector_box=result.face.face.box,
            face_box=result.face.box,
            keypoints=result.face.face.keypoint_array,
            crop_center=np.array(t.center, np.float32),
            crop_side=np.float32(t.side),
            crop_angle_deg=np.float32(t.angle_deg),
            crop_matrix=np.asarray(t.matrix, np.float32),
            relief_mm=result.depth.relief_mm,
            face_prob=result.depth.face_prob,
            mask=result.depth.face_prob > cfg.liveness.face_prob,
            crop=result.crop.input,
            score_mm=np.float32(score.score_mm if score else np.nan),
        )
    np.savez_compressed(out / f"{stem}.npz", **arrays)
    no_say = None
    if result.face:  # why the track gave this frame's score no say, if it did
        no_say = next(iter(pipeline.liveness.decider.track(result.face.track_id, 0.0).no_say), None)
    print(_predict_summary(args.image, result, threshold, out / f"{stem}.png", no_say))
    if args.ply and result.face:
        from firmware_app.depth import face_point_cloud, write_ply

        fov = args.fov_deg if args.fov_deg is not None else cfg.camera.fov_deg
        if not 0 < fov < 180:
            raise UsageError(f"--fov-deg {fov:g}: a field of view is between 0 and 180 degrees", EXIT_CONFIG)
        points, colours = face_point_cloud(
            result.depth,
            result.crop.transform,
            result.crop.input,
            result.face.box,
            (bgr.shape[1], bgr.shape[0]),
            fov_deg=fov,
            face_prob=cfg.liveness.face_prob,
        )
        args.ply.parent.mkdir(parents=True, exist_ok=True)
        write_ply(args.ply, points, colours)
        z = f", z {np.median(points[:, 2]):.0f} mm median" if len(points) else ""
        print(f"wrote {args.ply}: {len(points)} face points (FOV {fov:g}°{z})")
    return 0 if result.face else 1


def _predict_summary(image, result, threshold: float, png: Path, no_say: str | None = None) -> str:
    if result.face is None:
        return f"{image}: no face found; wrote {png}"
    liveness = result.liveness
    score = liveness.score
    box = ", ".join(f"{v:.0f}" for v in result.face.box)
    if score is None:
        return f"{image}: face at [{box}] but too little face in the depth map; wrote {png}"
    medium_llr = liveness.medium.llr if liveness.medium else 0.0
    counted = liveness.llr - medium_llr
    how = (f" not counted: {no_say}" if no_say
           else f" counted {counted:+.2f}" if abs(counted - score.llr) > 1e-6 else "")  # frame_llr_max
    medium = f", medium edges {medium_llr:+.2f}" if liveness.medium else ""
    evidence = f"evidence {liveness.llr:+.2f} (frame LLR {score.llr:+.2f}{how}{medium})"
    if liveness.decision:  # one frame can reach the spoof bound, never live (min_frames, motion)
        verdict = f"{liveness.decision.decision.upper()}: {liveness.decision.reason}"
    else:
        lean = "live" if liveness.llr > 0 else "spoof"
        verdict = f"leans {lean}, {evidence}; one frame is not a decision (the daemon decides along a track)"
    return (
        f"{image}: {verdict}; score {score.score_mm:.1f} mm (threshold {threshold:.1f}), face box [{box}], "
        f"{score.face_cells} face cells; wrote {png} and .npz"
    )


def cmd_profile(args) -> int:
    import threading

    from firmware_app import env
    from firmware_app.profile_report import build_report, cpu_seconds, report_table
    from firmware_app.profiling import Profiler, plot_profile

    cfg = _config(args.config)
    _setup_logging("WARNING")
    if args.seconds is not None and args.seconds <= 0:
        raise UsageError("--seconds must be positive", EXIT_CONFIG)
    frames = args.frames if args.frames is not None else (0 if args.seconds else 300)
    with tempfile.TemporaryDirectory(prefix="facedepth-profile-") as tmp:
        cfg = replace(cfg, hooks=(), outbox=replace(cfg.outbox, dir=tmp))  # events measured, not delivered
        # a bounded window: a soak run's own sample buffers must not look like growth
        window = max(frames, 1) if frames else 2000
        profiler = Profiler(window=window, fps_window_s=1e9, timeline_s=1.0)
        daemon = _build_daemon(cfg, _bundle(cfg.depth.bundle, cfg.depth.trusted_keys), profiler=profiler,
                               max_frames=frames)
        _install_signals(daemon)
        timer = threading.Timer(args.seconds, daemon.request_stop) if args.seconds else None
        rss0, cpu0, t0 = env.rss_mb(), cpu_seconds(), time.monotonic()
        if timer:
            timer.daemon = True
            timer.start()
        try:
            daemon.run()
        finally:
            if timer:
                timer.cancel()
        wall, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    report = build_report(profiler, daemon, cfg, wall, cpu, rss0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(report_table(report, out))
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        if plot_profile(report, args.plot):
            print(f"wrote {args.plot}")
        else:
            print(
                f"note: matplotlib is not installed, so no plot was written ({args.plot}); "
                "pip install matplotlib on a workstation to draw it from the JSON"
            )
    return 0


def cmd_config(_args) -> int:
    print(describe(), end="")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m firmware_app",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the daemon")
    run.add_argument("--config", required=True, type=Path)
    run.add_argument(
        "--validate-config", action="store_true", help="check the config (and bundle), then exit"
    )
    run.set_defaults(func=cmd_run)
    pred = sub.add_parser("predict", help="depth and liveness evidence of one image (a lean, not a decision)")
    pred.add_argument("image", type=Path)
    pred.add_argument("--bundle", type=Path, help="release bundle (default: the config's depth.bundle)")
    pred.add_argument("--config", type=Path, help="device config: detector/liveness settings, trusted keys")
    pred.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a public key (ed25519:...) or .pub file the bundle must be signed by (repeatable; adds to the "
        "config's depth.trusted_keys), e.g. keys/dev/signing.pub",
    )
    pred.add_argument("--out", type=Path, help="output directory (default: <image stem>_depth)")
    pred.add_argument(
        "--ply",
        type=Path,
        help="also write the face's point cloud (ASCII PLY, x y z mm + r g b; distance assumes a 150 mm "
        "wide face)",
    )
    pred.add_argument(
        "--fov-deg",
        type=float,
        help="camera horizontal field of view for the point cloud (default: config camera.fov_deg, 60)",
    )
    pred.set_defaults(func=cmd_predict)
    prof = sub.add_parser("profile", help="per-stage latency and frame rate on the configured camera")
    prof.add_argument("--config", required=True, type=Path)
    prof.add_argument("--frames", type=int, help="stop after N frames (default 300, or none with --seconds)")
    prof.add_argument("--seconds", type=float, help="stop after S seconds (a soak run: RSS growth, FPS)")
    prof.add_argument("--plot", type=Path, help="also draw p50/p95 per stage and FPS over time (PNG)")
    prof.add_argument("--out", default="profile.json", help="JSON report (default: %(default)s)")
    prof.set_defaults(func=cmd_profile)
    conf = sub.add_parser("config", help="print every config field with its default and description")
    conf.set_defaults(func=cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code


if __name__ == "__main__":
    sys.exit(main())
