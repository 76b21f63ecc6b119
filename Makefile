# facedepth — `make` lists the targets.
PY      ?= .venv/bin/python
OUT     ?= out
# the device's fallback runtime (requirements/device-fallback.txt) as an x86 venv
TFLRT   := $(OUT)/tflrt
N       ?= 48000
ATTACK_SHARE ?= 0.3
RELIEF  ?= 1 1
SEED    ?= 0
WORKERS ?= 2
CONFIG  ?= train/configs/default.yaml
RUN     ?= models/default
BUNDLE  ?= bundle/default

.DEFAULT_GOAL := help
.PHONY: help setup quickstart data data-small preview identities bench-synth bench-peer verify-runtimes train evaluate test lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.venv/.installed: requirements/workstation.txt requirements/constraints.txt requirements/anny.txt
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -r requirements/workstation.txt -c requirements/constraints.txt
	.venv/bin/pip install -q --no-deps -r requirements/anny.txt
	touch $@

setup: .venv/.installed  ## make .venv with the pinned workstation dependencies

# The quick start: QS_BUNDLE is the release bundle the daemon runs (committed at bundle/default).
QS_BUNDLE ?= bundle/default
QS        := $(OUT)/quickstart
QS_CONFIG := firmware_app/configs/quickstart.yaml
QS_ENV     = QS_OUT=$(QS) QS_BUNDLE=$(QS_BUNDLE)
.PHONY: qs-clip qs-daemon

quickstart: setup  ## the main job: small dataset + preview, a door clip, the daemon's decisions and frame rate
	$(PY) -m train.synth dataset --out $(QS) --n 128 --seed $(SEED) --workers $(WORKERS)
	$(PY) -m train.synth preview --dataset $(QS) --out $(QS)/preview.png
	@$(MAKE) --no-print-directory qs-clip
	@$(MAKE) --no-print-directory qs-daemon

qs-clip: setup  ## quick start: render the 5.5 s replay clip (bona fide walking up from 2 m, print, screen) + labels.json
	$(PY) -m train.synth.clip --out $(QS)/clip --seconds 4 --fps 10 --seed $(SEED) --walk-in-s 1.5

qs-daemon: setup  ## quick start: the daemon on that clip with QS_BUNDLE; prints decisions and frame rate
	@test -f $(QS_BUNDLE)/manifest.json || { \
	  echo "quickstart: no release bundle at $(QS_BUNDLE) ($(QS_BUNDLE)/manifest.json is missing)." >&2; \
	  echo "  build it (about 2 h of training):  make train && make convert BUNDLE=$(QS_BUNDLE)" >&2; \
	  echo "  or run an existing bundle:         make quickstart QS_BUNDLE=out/bundle" >&2; \
	  exit 1; }
	@test -f $(QS)/clip/labels.json || { echo "quickstart: no clip in $(QS)/clip; run make qs-clip" >&2; exit 1; }
	rm -rf $(QS)/state
	$(QS_ENV) $(PY) -m firmware_app run --config $(QS_CONFIG)
	@echo "decisions (command hook; truth from $(QS)/clip/labels.json, depth panels in $(QS)/state/decisions/):"
	@cat $(QS)/state/decisions.txt 2>/dev/null || echo "  none: no track reached a verdict"
	@echo "frame rate (python -m firmware_app profile on the same clip and config, hooks off):"
	@$(QS_ENV) $(PY) -m firmware_app profile --config $(QS_CONFIG) --frames 1000 --out $(QS)/state/profile.json

data: setup  ## write (or resume, or grow) the default model's dataset recipe: N=48000 SEED=0 ATTACK_SHARE=0.3 into out/synth (RELIEF="0.8 1.25": relief-stretched identities, off: session 11)
	$(PY) -m train.synth dataset --out $(OUT)/synth --n $(N) --seed $(SEED) --workers $(WORKERS) --attack-share $(ATTACK_SHARE) --relief-scale $(RELIEF)

.PHONY: data-test
data-test: setup  ## the test set out/synth_test: 3,200 frames = 2,100 bona fide + 1,100 attacks (>= 214 per type), identity-disjoint from train/val
	$(PY) -m train.synth dataset --out $(OUT)/synth_test --split test --n 3200 --seed $(SEED) --workers $(WORKERS) --attack-share 0.35

preview: setup  ## contact sheet of out/synth (frame | depth | mask + landmarks, attacks included)
	$(PY) -m train.synth preview --dataset $(OUT)/synth --out $(OUT)/synth/preview.png

identities: setup  ## docs/identities.jpg: 64 random identities
	$(PY) -m train.synth identities --out docs/identities.jpg --n 64

bench-synth: setup  ## generator frames/s with 2 workers and peak memory per worker
	$(PY) -m train.synth bench --n 256 --workers 2

.PHONY: bench-liveness
CLIPS ?= 300
bench-liveness: setup  ## door clips (walk/stand/turn; each attack hand-held + static) through the daemon's pipeline: clip APCER/BPCER, time to live (CLIPS=300 BUNDLE=)
	$(PY) -m convert.bench_liveness --bundle $(BUNDLE) --clips $(CLIPS) --out $(OUT)/bench/liveness

.PHONY: bench-video
VIDEO_CLIPS ?= 120
bench-video: setup  ## video replays: phones, tablets, monitors playing a head that turns, on a stand and hand-held, through the daemon's pipeline (VIDEO_CLIPS=120 BUNDLE=)
	$(PY) -m convert.bench_liveness --bundle $(BUNDLE) --clips $(VIDEO_CLIPS) --video --out $(OUT)/bench/video

.PHONY: bench-relief
bench-relief: setup  ## relief read or recalled: the bundle on test faces with their relief stretched ×0.8–1.4 (slope, amplitude ratio; BUNDLE=)
	$(PY) -m convert.bench_relief --bundle $(BUNDLE) --out $(OUT)/bench/relief

.PHONY: bench-field
bench-field: setup  ## grey camera, frame-edge faces, another camera pipeline: liveness score change and frames rejected alone (synthetic test split + shipped real photos; BUNDLE=)
	$(PY) -m convert.bench_field --bundle $(BUNDLE) --dataset $(OUT)/synth_test --out $(OUT)/bench/field.json

.PHONY: bench-http
bench-http: setup  ## status port under load: 1000 idle + 50 slowloris connections, 200 concurrent clients; answered, p95
	$(PY) -m firmware_app.bench_http --clients 200 --idle 1000 --slow 50

.PHONY: bench-detect arm-check
DETECT_N ?= 200
bench-detect: setup  ## face detection 30 cm-2 m by distance band: short range vs full range + search (DETECT_N=200)
	$(PY) -m convert.mediapipe_assets
	$(PY) -m train.bench_detect --n $(DETECT_N) --seed $(SEED)

arm-check: setup $(TFLRT)/.installed  ## device side on aarch64 under qemu 10 (rootfs + wheels cached in out/arm), ai-edge-litert and the tflite-runtime fallback, each vs x86: same decisions (BUNDLE=)
	@test -f $(QS)/clip/labels.json || $(MAKE) --no-print-directory qs-clip
	$(PY) -m tools.arm_check --bundle $(BUNDLE) --clip $(QS)/clip --out $(OUT)/arm --trusted-key $(TRUSTED_KEY) \
		--x86-fallback-python $(TFLRT)/bin/python

bench-peer: setup  ## int8 depth vs MediaPipe face mesh: 1-thread latency, relief MAE (BUNDLE=) → out/bench/peer.json
	$(PY) -m convert.mediapipe_assets
	$(PY) -m convert.peer --bundle $(BUNDLE) --dataset $(OUT)/synth

.PHONY: photo-attacks bench-photo-attacks
PHOTO_N ?= 600
photo-attacks: setup  ## held-out slice: prints/screens of real public-domain photos never in training → out/photo_attacks (PHOTO_N=600)
	$(PY) -m train.synth.photo_attacks --out $(OUT)/photo_attacks --n $(PHOTO_N) --seed $(SEED)

bench-photo-attacks: setup  ## frame APCER on that slice per source, type, face size, Wilson 95 % (BUNDLE=) → out/bench/photo_attacks.json
	@test -f $(OUT)/photo_attacks/index.json || $(MAKE) --no-print-directory photo-attacks
	$(PY) -m convert.photo_attack_eval --bundle $(BUNDLE) --dataset $(OUT)/photo_attacks --out $(OUT)/bench/photo_attacks.json

$(TFLRT)/.installed: requirements/device-fallback.txt  # the device's fallback set, on x86
	python3 -m venv $(TFLRT)
	$(TFLRT)/bin/pip install -q -r requirements/device-fallback.txt
	touch $@

verify-runtimes: setup $(TFLRT)/.installed  ## BUNDLE's model under ai_edge_litert and tflite_runtime on out/synth's test split, side by side
	$(PY) -m convert.runtime_check --bundle $(BUNDLE) --dataset $(OUT)/synth --python $(TFLRT)/bin/python

train: setup  ## a training session: warm start from models/default, promote if validation improves and the held-out check passes (FRESH=1: from scratch; TRANSFER=1: new architecture, matching layers copied; NO_HELDOUT=1: validation alone)
	@test -f $(OUT)/synth/index.json || $(MAKE) --no-print-directory data
	$(PY) -m train.session --config $(CONFIG) $(if $(FRESH),--fresh) $(if $(TRANSFER),--transfer) $(if $(NO_HELDOUT),--no-heldout)

.PHONY: heldout
heldout: setup  ## RUN= against models/default on the real-photo slice, both calibrated on the committed model's dataset (what make train checks before promoting)
	$(PY) -m convert.heldout $(RUN) --photos $(OUT)/photo_attacks --work $(OUT)/heldout

evaluate: setup  ## evaluate RUN (default models/default) on the test split, write its report
	$(PY) -m train.evaluate $(RUN)

.PHONY: convert bundle-verify keys sign-bundle
convert: setup  ## int8 model + verification gate + release bundle (RUN=models/default BUNDLE=bundle/default)
	$(PY) -m convert $(RUN) --out $(BUNDLE)

bundle-verify: setup  ## check a release bundle as the device does: signature, schema, sha256, shapes (BUNDLE=, TRUSTED_KEY=)
	$(PY) -m firmware_app.bundle $(BUNDLE) --trusted-key $(TRUSTED_KEY)

# Signing (keys/README.md): bundles and releases are signed with FACEDEPTH_SIGNING_KEY, else the committed
# DEVELOPMENT key keys/dev/signing.key (public: trusted only by the example configs).
KEYS        ?= keys/operator
TRUSTED_KEY ?= $(if $(FACEDEPTH_SIGNING_KEY),$(basename $(FACEDEPTH_SIGNING_KEY)).pub,keys/dev/signing.pub)

keys: setup  ## make your own signing key pair in KEYS=keys/operator (KEYS_FORCE=1 rotates); prints the public key
	$(PY) -m convert.sign --keygen $(KEYS) $(if $(KEYS_FORCE),--force)

sign-bundle: setup  ## sign BUNDLE's manifest.json with FACEDEPTH_SIGNING_KEY (default: the development key)
	$(PY) -m convert.sign $(BUNDLE)

# Compression study (convert/study/): ten variants on one dataset and step budget → out/study/<config>/.
.PHONY: study study-smoke
study: setup  ## compression study, full config: takes HOURS (~5 h on 2 cores); rerun resumes; writes docs/
	$(PY) -m convert.study --config convert/study/configs/full.yaml --docs docs

study-smoke: setup  ## compression study pipeline check, every variant in minutes → out/study/smoke/
	$(PY) -m convert.study --config convert/study/configs/smoke.yaml

lint: setup  ## ruff
	.venv/bin/ruff check .

test: setup lint  ## lint and the whole test suite (what CI runs)
	$(PY) -m pytest

clean:  ## remove out/ (datasets, runs, caches)
	rm -rf $(OUT)

# Deploy (deploy/README.md): DEVICE=user@host or DEVICES="a b c", PORT=22, CONFIG= device config
# (default deploy/device.example.yaml), BUNDLE= release bundle (default bundle/default).
DEVICES       ?= $(DEVICE)
PORT          ?= 22
DEPLOY_CONFIG  = $(if $(filter command line environment,$(origin CONFIG)),$(CONFIG),deploy/device.example.yaml)
DEPLOY_ARGS    = --devices "$(DEVICES)" --port $(PORT)
.PHONY: deploy deploy-status deploy-logs rollback

deploy: setup  ## build a verified release and install it over ssh (DEVICE=user@host [PORT=22] [CONFIG=] [BUNDLE=])
	$(PY) -m deploy.deploy deploy $(DEPLOY_ARGS) --config $(DEPLOY_CONFIG) --bundle $(BUNDLE)

deploy-status: setup  ## current release and /healthz of DEVICE (or DEVICES)
	$(PY) -m deploy.deploy status $(DEPLOY_ARGS)

deploy-logs: setup  ## last 100 daemon log lines of DEVICE (journald, or daemon.log in supervisor mode)
	$(PY) -m deploy.deploy logs $(DEPLOY_ARGS)

rollback: setup  ## switch DEVICE back to its previous release, restart, health check
	$(PY) -m deploy.deploy rollback $(DEPLOY_ARGS)
