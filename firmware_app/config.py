"""Daemon configuration: one frozen dataclass per YAML section, every field with a default and a description.

    camera:    {type: replay, source: clips/door.mp4, loop: true}
    depth:     {bundle: /opt/facedepth/bundle}
    hooks:
      - {type: http, url: "https://acs.local/events", secret: "${FACEDEPTH_HMAC_SECRET}"}

A file may set any subset of the fields. Anything the daemon cannot use is rejected before it starts,
with the file, line and key:

    door.yaml:7: unknown key 'camera.fsp' (known: backoff_max_s, backoff_s, device, fps, ...)
    door.yaml:12: hooks[0].secret: environment variable FACEDEPTH_HMAC_SECRET is not set

Secrets come from the environment: any string value may contain `${NAME}` (or `${NAME:-default}`),
replaced when the file is loaded. `describe()` lists every field with its default and description.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from firmware_app.config_hooks import (  # noqa: F401 - re-exported: hook configs are part of the config
    HOOK_TYPES,
    CommandHookConfig,
    GpioHookConfig,
    HookConfig,
    HttpHookConfig,
    MqttHookConfig,
    parse_hooks,
)
from firmware_app.config_yaml import MAX_BYTES, ConfigError, Ctx, StrictLoader, described, section
from firmware_app.signing import parse_public_key

_f = described


@dataclass(frozen=True)
class CameraConfig:
    type: str = _f(
        "replay",
        "backend: replay (video file or image folder), opencv (V4L2 / GStreamer), "
        "picamera2 (Raspberry Pi camera)",
        choices=("replay", "opencv", "picamera2"),
    )
    source: str = _f("", "replay: a video file or a folder of images (sorted by name)")
    loop: bool = _f(True, "replay: start again at the end; false = the daemon stops when the clip ends")
    hold_frames: int = _f(1, "replay of an image folder: frames each image is shown for", min=1)
    clip_fps: float = _f(
        0.0, "replay: stamp frame k at k / clip_fps s (the clip's own time), so the liveness timings run in "
        "clip time however fast the replay goes; 0 = the wall clock", min=0.0,
    )
    device: str = _f(
        "0",
        "opencv: V4L2 index (0 = /dev/video0), device path, or a GStreamer pipeline "
        "string ending in appsink (Jetson CSI camera)",
    )
    width: int = _f(640, "requested frame width (opencv, picamera2 inference stream)", min=16, max=8192)
    height: int = _f(480, "requested frame height (opencv, picamera2 inference stream)", min=16, max=8192)
    fps: float = _f(
        0.0,
        "frames per second: replay pacing (0 = the clip's native rate, image folders "
        "as fast as possible), the camera's requested rate otherwise",
        min=0.0,
        max=1000.0,
    )
    fov_deg: float = _f(
        60.0,
        "horizontal field of view in degrees (pinhole intrinsics for point clouds: fx = W/2 / tan(fov/2))",
        min=1.0,
        max=179.0,
    )
    colour: str = _f(
        "rgb",
        "rgb, or grey for a mono / IR camera: every frame becomes luma in three equal channels "
        "before detection and the crop (gray is accepted too)",
        choices=("rgb", "grey", "gray"),
    )
    read_timeout_s: float = _f(2.0, "a read that takes longer counts as a camera error", min=0.01)
    backoff_s: float = _f(0.5, "first reconnect delay after a camera error; doubles per failure", min=0.0)
    backoff_max_s: float = _f(10.0, "longest reconnect delay", min=0.0)


@dataclass(frozen=True)
class DetectorConfig:
    model: str = _f(
        "auto",
        "BlazeFace model: full_range (faces out to 2 m and beyond; the bundle's detector.full_range_file), "
        "short_range (to ~70 cm at 640x480, ~2.5x cheaper), auto = full_range when the bundle ships it",
        choices=("auto", "full_range", "short_range"),
    )
    tiles: int = _f(
        2, "while no face is tracked, also scan one tile of a tiles x tiles grid per frame (far faces); "
        "0 = off", min=0, max=4,
    )
    roi_scale: float = _f(
        4.0, "while a face is tracked (or a weak box proposed), also detect in a square this many face "
        "widths around it, with the short-range model; 0 = off", min=0.0, max=20.0,
    )
    face_like: bool = _f(True, "drop boxes whose eye, nose and mouth keypoints are not laid out like a face")
    num_threads: int = _f(1, "TFLite threads for BlazeFace", min=1, max=64)
    min_score: float = _f(0.5, "detections below this score are dropped", min=0.0, max=1.0)
    min_face_px: int = _f(40, "faces whose box is narrower (frame pixels) are ignored", min=0)
    track_iou: float = _f(
        0.3, "a face continues a track when its box overlaps the last one by this IoU", min=0.0, max=1.0
    )
    track_max_gap: int = _f(5, "frames without the face after which its track ends", min=0)


@dataclass(frozen=True)
class DepthConfig:
    bundle: str = _f("", "release bundle directory (manifest.json + depth and detector .tflite)")
    num_threads: int = _f(1, "TFLite threads for the depth network", min=1, max=64)
    trusted_keys: tuple[str, ...] = _f(
        (),
        "public keys (ed25519:BASE64, `make keys` prints one) of which one must have signed the bundle's "
        "manifest.json; empty = every bundle is refused",
    )


@dataclass(frozen=True)
class LivenessConfig:
    threshold_mm: float = _f(
        0.0,
        "plane-removed relief range (mm) shown beside each frame, and the centre of the evidence of a "
        "bundle without a calibrated liveness.evidence model; 0 = the bundle's liveness.threshold_mm",
        min=0.0,
    )
    face_prob: float = _f(0.5, "grid cells with face probability above this form the face mask", min=0.0,
                          max=1.0)
    min_face_cells: int = _f(200, "fewer face cells (of 80×80) = no score for this frame", min=3,
                             max=6400)
    apcer_target: float = _f(
        0.01, "live only when a track's evidence reaches ln(1 / apcer_target)", min=1e-9, max=0.49
    )
    bpcer_target: float = _f(0.01, "spoof when a track's evidence falls to ln(bpcer_target)", min=1e-9,
                             max=0.49)
    frame_llr_max: float = _f(
        1.5, "one frame adds at most ± this much evidence (with the motion cap, below the live bound)",
        min=0.01,
    )
    min_frames: int = _f(3, "scored frames a track needs before it can be decided live", min=2)
    min_mean_llr: float = _f(
        1.0, "live also needs the track's mean frame evidence to reach this (frames are not independent)",
        min=0.0,
    )
    mean_window_s: float = _f(
        0.0, "> 0: or the mean of the frames of the track's last this many seconds, if higher (at least "
        "min_frames of them): people walking up, whose far frames score weakly, are let in sooner, but so "
        "are some hand-held screens when no border is seen (README); 0 = the whole track's (safe default)",
        min=0.0,
    )
    timeout_s: float = _f(3.0, "undecided (door stays shut) when a track is not decided within this", min=0.1)
    motion: bool = _f(True, "use the motion cue (a flat medium moves as a plane) along each track")
    min_moved_px: float = _f(
        0.7, "with the motion cue on, live only once the face has moved this much (median corner shift, px "
        "at a 128 px wide face): a print or screen on a stand is a perfectly still picture; 0 = off", min=0.0,
    )
    planar_veto_llr: float = _f(
        -0.5, "with the motion cue on, a track whose face moved as a plane (a frame pair's motion LLR at or "
        "below this) is never live: a hand-held print or screen", max=0.0,
    )
    min_track_s: float = _f(
        0.6, "no live before a track is this old: the motion cue sees a few frame pairs first", min=0.0
    )
    min_face_px: float = _f(
        60.0, "frames whose face (68-landmark box) is narrower than this many frame pixels add no frame "
        "evidence (the face is too small to judge; a person walking up is decided once nearer, without "
        "their weak far frames dragging the mean); 0 = every frame counts", min=0.0,
    )
    max_outside: float = _f(
        0.10, "frames whose crop (1.6 face widths) runs past the frame edge over more than this share add "
        "no frame evidence: what fills it, not the face, would decide (a face at the frame edge keeps its "
        "frame LLR up to 10 %, then loses a median 0.35 at 15 %, 0.9 at 20 %: make bench-field); 1 = every "
        "frame counts", min=0.0, max=1.0,
    )
    medium: bool = _f(True, "use the medium-edge cue (straight edges of a print or screen around the face; "
                            "only lowers the evidence) when the bundle has its table")
    save_depth_dir: str = _f("", "write each decision's depth colour map here (PNG); '' = off")
    save_depth_keep: int = _f(
        1000, "keep at most this many decision panels in save_depth_dir, deleting the oldest (~60 KB each: a "
        "daemon left running for months must not fill its disk); 0 = keep every one", min=0,
    )


@dataclass(frozen=True)
class OutboxConfig:
    dir: str = _f("/var/lib/facedepth/outbox", "events (JSON lines) and per-hook delivery cursors")
    fsync: bool = _f(True, "fsync each event before any hook sees it (turn off only for benchmarks)")
    segment_bytes: int = _f(1 << 20, "a new segment file is started beyond this size", min=256)
    retry_s: float = _f(1.0, "first delay before retrying a failed delivery; doubles per failure", min=0.0)
    retry_max_s: float = _f(60.0, "longest delay between delivery attempts", min=0.0)
    drain_timeout_s: float = _f(10.0, "when a replay ends, wait this long for hooks to deliver", min=0.0)


@dataclass(frozen=True)
class HttpConfig:
    enabled: bool = _f(True, "serve /healthz, /status and /metrics")
    host: str = _f("127.0.0.1", "bind address; beyond loopback a token is required")
    port: int = _f(8321, "TCP port (0 = any free port)", min=0, max=65535)
    token: str = _f("", "bearer token required when host is not loopback; use ${ENV}", secret=True)
    preview: bool = _f(
        False, "serve the live page /live (alias /preview), its images, and /preview.jpg (one JPEG panel)"
    )
    refresh_ms: int = _f(500, "the live page polls this often (ms)", min=100, max=10000)
    workers: int = _f(4, "threads answering requests (fixed; idle connections hold none)", min=1, max=64)
    backlog: int = _f(128, "listen backlog: connections the kernel queues before the server accepts them",
                      min=1, max=4096)
    request_timeout_s: float = _f(5.0, "a client must send its request, and take the answer, within this",
                                  min=0.1, max=300.0)
    max_connections: int = _f(256, "connections waiting for their request; beyond, the oldest is closed",
                              min=1, max=10000)


@dataclass(frozen=True)
class LoggingConfig:
    level: str = _f("INFO", "DEBUG, INFO, WARNING or ERROR", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    file: str = _f("", "log file; '' = stderr (journald under systemd)")


@dataclass(frozen=True)
class Config:
    camera: CameraConfig = field(default_factory=CameraConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    hooks: tuple[HookConfig, ...] = ()
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


SECTIONS = typing.get_type_hints(Config)


def _top(loader, node, name: str, ctx: Ctx):
    """One top-level value: a section, or the hooks list (config_hooks.parse_hooks)."""
    if name == "hooks":
        return parse_hooks(loader, node, ctx)
    return section(loader, node, SECTIONS[name], name, ctx)


def _check_liveness(lv: LivenessConfig, root, ctx: Ctx) -> None:
    from firmware_app.liveness import MOTION_TOTAL_MAX

    bound = math.log(1 / lv.apcer_target)
    if lv.frame_llr_max + MOTION_TOTAL_MAX >= bound:
        raise ctx.error(root, "liveness.frame_llr_max",
                        f"{lv.frame_llr_max} + the motion cap {MOTION_TOTAL_MAX} reaches the live bound "
                        f"{bound:.2f} (ln 1/apcer_target): one frame could decide live; lower it")
    if lv.min_track_s >= lv.timeout_s:
        raise ctx.error(root, "liveness.min_track_s", f"{lv.min_track_s} s is not below timeout_s "
                        f"{lv.timeout_s} s: no track could ever be decided live; lower it")


def _check(cfg: Config, root, ctx: Ctx) -> None:
    """Rules across fields, checked after the whole file is read."""
    _check_liveness(cfg.liveness, root, ctx)
    if cfg.camera.type == "replay" and not cfg.camera.source:
        raise ctx.error(root, "camera.source", "a replay camera needs a video file or image folder")
    for key in cfg.depth.trusted_keys:
        try:
            parse_public_key(key)
        except ValueError as e:
            raise ctx.error(root, "depth.trusted_keys", str(e)) from None
    loopback = cfg.http.host in ("127.0.0.1", "localhost", "::1")
    if cfg.http.preview and not cfg.http.enabled:
        raise ctx.error(root, "http.preview", "needs http.enabled: true")
    if cfg.http.preview and not loopback and not cfg.http.token:
        raise ctx.error(
            root, "http.token", f"required for http.preview when http.host is {cfg.http.host} (not loopback)"
        )
    if cfg.http.enabled and not loopback and not cfg.http.token:
        raise ctx.error(root, "http.token", f"required when http.host is {cfg.http.host} (not loopback)")


def parse_config(text: str, filename: str = "<config>", env=None) -> Config:
    """YAML text → Config, or ConfigError naming the line and key."""
    ctx = Ctx(filename, os.environ if env is None else env)
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{filename}: {len(text)} characters, more than a config can be ({MAX_BYTES}); "
                          "is this the right file?")
    try:
        loader = StrictLoader(text, filename)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}" if mark else filename
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if root is None:
        return _checked(Config(), None, ctx)
    return _checked(section(loader, root, Config, "", ctx, _top), root, ctx)


def _checked(cfg: Config, root, ctx: Ctx) -> Config:
    _check(cfg, root, ctx)
    return cfg


def load_config(path: Path | str, env=None) -> Config:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes, more than a config can be "
                              f"({MAX_BYTES}); is this the right file?")
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    return parse_config(text, str(path), env)


def describe() -> str:
    """Every section and field with its default and description, as commented YAML."""
    lines = []
    for name, cls in SECTIONS.items():
        if name == "hooks":
            lines.append("hooks:  # a list; each item has a type:")
            for kind, hook_cls in HOOK_TYPES.items():
                lines.append(f"  # - type: {kind}")
                lines += [f"  #   {ln}" for ln in _fields_yaml(hook_cls) if not ln.startswith("type:")]
            continue
        lines.append(f"{name}:")
        lines += [f"  {ln}" for ln in _fields_yaml(cls)]
    return "\n".join(lines) + "\n"


def _fields_yaml(cls) -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        value = (
            yaml.safe_dump(list(default) if isinstance(default, tuple) else default, default_flow_style=True)
            .strip()
            .removesuffix("...")
            .strip()
        )
        out.append(f"{f.name}: {value}  # {f.metadata['doc']}")
    return out
