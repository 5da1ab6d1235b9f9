# p2phd: pix2pixHD on MindSpore. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 22
	@echo 'variables: DATA DEMO RUN MODE SIZE NGF JOBS NPROC NODES DEVICE VGG INCEPTION TB EXTRA ... (docs/training.md: Make variables)'

setup: $(STAMP) ## create .venv and install p2phd with every extra and the tested versions (requirements-lock.txt; quick when done)
	@$(PY) tests/browser.py

# pyproject.toml's ranges, held at the exact versions the suite passed with
$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements-lock.txt -e '.[all,dev]'
	touch $@

# The suite on TEST_JOBS pytest-xdist workers, one test file per worker at a time (module
# fixtures build once; conftest orders the costliest files first); TEST_JOBS=0: one process.
TEST_JOBS ?= 2
PYTEST_JOBS = $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder)
TEST_EXTRA ?=#                     extra pytest options (e.g. --durations=20 --cpu-durations 20)

test: $(STAMP) ## run the whole test suite (~6 min on 2 cores; TEST_JOBS=0 for one process)
	$(PY) -m pytest -q $(PYTEST_JOBS) $(TEST_EXTRA)

test-fast: $(STAMP) ## the unit tests only (no training, msrun or end-to-end verb chains; < 1 min)
	$(PY) -m pytest -q -m 'not slow' $(PYTEST_JOBS) $(TEST_EXTRA)

lint: $(STAMP) ## ruff check
	$(VENV)/bin/ruff check p2phd tests bench
	$(VENV)/bin/ruff format --check p2phd tests bench

.PHONY: help setup test test-fast lint

# ---------------------------------------------------------------------------------------------
# The seed's four training modes, feature pipeline, renders and the demo.
# Every artifact is a real file, so Make rebuilds only what is missing; `make -n TARGET` shows
# the plan. Interrupted targets resume when rerun (train, precompute and render resume by
# themselves; prepare and cluster write atomically).
# ---------------------------------------------------------------------------------------------
BIN := bin
DEMO_DATA := outputs/demo-data
# ---- make demo's settings: its sub-make gets them, and DEMO=1 gives them to any target (the
# demo's data and runs: make evaluate-test DEMO=1 MODE=1024p, make edit DEMO=1 MODE=512p-feat, ...)
DEMO_SETTINGS := SIZE=128 NGF=16 NITER_512=30 DECAY_512=30 NITER_1024=2 DECAY_1024=2 FIX_GLOBAL=1 N_CLUSTERS=3
DEMO_EXTRA := --n_downsample_global 3 --n_blocks_global 3 --n_blocks_local 1 --ndf 16 --nef 8 --n_layers_D 2
DEMO_TAG = $(if $(filter $(DEMO_DATA),$(DATA)),demo,demo-$(notdir $(abspath $(DATA))))
DEMO_RUNS = DATASET=$(DEMO_TAG) RUN_512p=$(DEMO_TAG)-512p RUN_1024p=$(DEMO_TAG)-1024p \
	RUN_512p-feat=$(DEMO_TAG)-512p-feat RUN_1024p-feat=$(DEMO_TAG)-1024p-feat
DEMO ?=#                           DEMO=1: act on make demo's data and runs, with its settings
DATA ?= $(DEMO_DATA)#              Cityscapes tree (leftImg8bit/, gtFine/) or pix2pixHD folders
ifeq ($(DEMO),1)
$(foreach s,$(DEMO_SETTINGS) $(DEMO_RUNS),$(eval $(s)))
EXTRA = $(DEMO_EXTRA)
endif
DATASET ?= $(if $(filter $(DEMO_DATA),$(DATA)),demo,$(notdir $(abspath $(DATA))))#  manifest names
RUN ?= label2city#                 run names: $(RUN)_512p, $(RUN)_1024p, ..._feat
RUN_512p ?= $(RUN)_512p
RUN_1024p ?= $(RUN)_1024p
RUN_512p-feat ?= $(RUN)_512p_feat
RUN_1024p-feat ?= $(RUN)_1024p_feat
MODE ?= 1024p#                     run that render-* uses: 512p, 1024p, 512p-feat, 1024p-feat
SIZE ?= 1024#                      512p load width (pixels); the 1024p modes use twice that
NGF ?= 64#                         512p generator width; the 1024p local enhancer uses NGF/2
JOBS ?= 0#                         prepare worker processes (0 = all cores)
NPROC ?= 1#                        workers (devices) per node: train-*, precompute, render-test/val/train under msrun
NODES ?= 1#                        nodes (machines) of one msrun job: NPROC*NODES workers in all
NODE_RANK ?= 0#                    this node's number, 0..NODES-1 (node 0 runs the scheduler)
MASTER_ADDR ?= 127.0.0.1#          node 0's address (every node gives the same)
MASTER_PORT ?= 8118
DEVICE ?= CPU#                     MindSpore device target: CPU, Ascend or GPU
VGG ?=#                            VGG19 checkpoint; default ./vgg19.ckpt if present, else no VGG loss
TB ?=#                             TB=1: bin/train --tensorboard (event files in each run's tensorboard/)
EXTRA ?=#                          extra bin/train options (last, so they override)
RENDER_EXTRA ?=#                   extra bin/render options (e.g. --style car=3 --variants 4)
ENGINE ?= auto#                    render-*, edit: bin/render --engine (auto: the run's cached ONNX export in the engine fastest for this CPU, MindSpore on Ascend/GPU; mindspore, onnxruntime, openvino), or onnx (the MODE run's export-onnx file through onnxruntime, into render-<split>-onnx)
EXPORT_EXTRA ?=#                   extra bin/export options (e.g. --uint8 --batch_size 4 --size 512x1024)
INCEPTION ?= pt_inception-2015-12-05-6726825d.pth#  pytorch-fid's FID Inception weights (bin/evaluate)
EVAL_EXTRA ?=#                     extra bin/evaluate options (e.g. --kid, --real MANIFEST)
SEG ?=#                            fyu/drn's drn-d-105_ms_cityscapes.pth: evaluate-* also give mIoU and pixel accuracy
SEG_SIZE ?= 256x512#               H x W the segmentation score resizes to (the papers' 512x256)
NITER_512 ?= 100
DECAY_512 ?= 100
NITER_1024 ?= 50
DECAY_1024 ?= 50
FIX_GLOBAL ?= 10
N_CLUSTERS ?= 10

# Without DATA these targets would train the seed's full configuration (ngf 64, 200 epochs,
# images upscaled to 1024 wide) on the toy data: stop at once. `make demo` keeps its own data and
# settings (its sub-make runs at MAKELEVEL 1); DEMO=1 asks for the demo's.
NEEDS_DATA := prepare train-512p train-1024p train-512p-feat train-1024p-feat precompute cluster \
	render-test render-val render-train edit export export-onnx evaluate-test evaluate-val \
	render-nvidia demo-renders
ifeq ($(origin DATA)$(MAKELEVEL)$(DEMO),file0)
ifneq ($(filter $(NEEDS_DATA),$(MAKECMDGOALS)),)
$(error $(firstword $(filter $(NEEDS_DATA),$(MAKECMDGOALS))) needs a dataset: make $(firstword $(filter $(NEEDS_DATA),$(MAKECMDGOALS))) DATA=/path/to/cityscapes (a Cityscapes tree or pix2pixHD folders); or `make demo` for every mode on generated toy data, then DEMO=1 for its runs)
endif
endif

SIZE2 := $(shell echo $$((2 * $(SIZE))))
NGF_LOCAL := $(shell echo $$(($(NGF) / 2)))
SIZE_512p := $(SIZE)
SIZE_512p-feat := $(SIZE)
SIZE_1024p := $(SIZE2)
SIZE_1024p-feat := $(SIZE2)
MODES := 512p 1024p 512p-feat 1024p-feat
VGG_PATH := $(or $(VGG),$(wildcard vgg19.ckpt))
VGG_OPT := $(if $(VGG_PATH),--vgg_pre_trained $(VGG_PATH),--no_vgg_loss)

man = manifests/$(DATASET)-$(1)-$(2).h5#          split, load width
run_dir = outputs/$(RUN_$(1))#                    mode
run_done = $(call run_dir,$(1))/trained.stamp#    touched when bin/train exits 0 (G.ckpt is also written mid-run)
ENGINE_SUFFIX := $(if $(filter onnx,$(ENGINE)),-onnx)
page = $(call run_dir,$(1))/render-$(2)$(ENGINE_SUFFIX)/index.html# mode, split
onnx_file = $(call run_dir,$(1))/$(RUN_$(1)).onnx# mode: what export-onnx writes, render-* ENGINE=onnx reads
FEATURES := manifests/$(RUN_512p-feat)-features.h5
CLUSTERS := manifests/$(RUN_512p-feat)-clusters.h5
DATA_DEP := $(if $(filter $(DEMO_DATA),$(DATA)),$(DEMO_DATA)/demo-dataset.json)

# $(2) alone, or under msrun with NPROC workers here out of NPROC*NODES, logs in $(1) (the venv's
# bin first on PATH: msrun starts `python`)
WORKERS := $(shell echo $$(($(NPROC) * $(NODES))))
msrun_cmd = $(if $(filter 1,$(WORKERS)),$(2),PATH="$(CURDIR)/$(VENV)/bin:$$PATH" msrun \
	--worker_num=$(WORKERS) --local_worker_num=$(NPROC) --node_rank=$(NODE_RANK) \
	--master_addr=$(MASTER_ADDR) --master_port=$(MASTER_PORT) --log_dir=$(1) --join=True $(2))
train_cmd = $(call msrun_cmd,$(call run_dir,$(1))-msrun-logs,$(BIN)/train)
COMMON := --device_target $(DEVICE) --checkpoints_dir outputs $(VGG_OPT) $(if $(TB),--tensorboard)
OPTS_512p := --netG global --ngf $(NGF) --num_D 2 --resize_or_crop scale_width \
	--load_size $(SIZE) --niter $(NITER_512) --niter_decay $(DECAY_512)
OPTS_1024p := --netG local --ngf $(NGF_LOCAL) --num_D 3 --resize_or_crop none \
	--load_size $(SIZE2) --niter $(NITER_1024) --niter_decay $(DECAY_1024) \
	--niter_fix_global $(FIX_GLOBAL)

prepare: $(call man,train,$(SIZE)) $(call man,train,$(SIZE2)) $(call man,test,$(SIZE)) $(call man,test,$(SIZE2)) ## prepare DATA's train and test splits at both sizes (manifests/*.h5)
train-512p: $(call run_done,512p) ## global generator, ngf 64, 2 D scales, scale_width 1024, 100+100 epochs
train-1024p: $(call run_done,1024p) ## local enhancer from the 512p run, ngf 32, 3 D scales, 2048x1024, 50+50 epochs, global fixed 10
train-512p-feat: $(call run_done,512p-feat) ## as 512p, with the instance-feature encoder trained jointly
train-1024p-feat: $(call run_done,1024p-feat) ## as 1024p, from 512p-feat, reading its precomputed feature maps
precompute: $(FEATURES) ## encoder features of the 512p-feat run over the training split, at 1024p size
cluster: $(CLUSTERS) ## k-means centres per class of the precomputed features (render styles)
render-test: $(call page,$(MODE),test) ## render DATA's test split (Cityscapes: val frames) with the MODE run
render-val: $(call page,$(MODE),val) ## render DATA's val split with the MODE run
render-train: $(call page,$(MODE),train) ## render DATA's training split with the MODE run

$(DEMO_DATA)/demo-dataset.json: | $(STAMP)
	$(PY) -m p2phd.demo_data $(DEMO_DATA) --n_train $(DEMO_TRAIN) --n_test $(DEMO_TEST) \
		--width $(DEMO_WIDTH) --height $(DEMO_HEIGHT) >/dev/null

define prepare_rule
$(call man,$(1),$(2)): $(DATA_DEP) | $(STAMP)
	$(BIN)/prepare --dataroot $(DATA) --phase $(1) --load_size $(2) --jobs $(JOBS) --out $$@
endef
$(foreach split,train test val,$(foreach size,$(SIZE) $(SIZE2),$(eval $(call prepare_rule,$(split),$(size)))))

$(call run_done,512p): $(call man,train,$(SIZE)) | $(STAMP)
	$(call train_cmd,512p) $< --name $(RUN_512p) $(COMMON) $(OPTS_512p) $(EXTRA)
	touch $@

$(call run_done,512p-feat): $(call man,train,$(SIZE)) | $(STAMP)
	$(call train_cmd,512p-feat) $< --name $(RUN_512p-feat) $(COMMON) $(OPTS_512p) --instance_feat $(EXTRA)
	touch $@

$(call run_done,1024p): $(call man,train,$(SIZE2)) $(call run_done,512p)
	$(call train_cmd,1024p) $< --name $(RUN_1024p) $(COMMON) $(OPTS_1024p) \
		--load_pretrain $(call run_dir,512p) $(EXTRA)
	touch $@

$(call run_done,1024p-feat): $(call man,train,$(SIZE2)) $(call run_done,512p-feat) $(FEATURES)
	$(call train_cmd,1024p-feat) $< --name $(RUN_1024p-feat) $(COMMON) $(OPTS_1024p) \
		--load_pretrain $(call run_dir,512p-feat) --instance_feat --load_features $(FEATURES) $(EXTRA)
	touch $@

$(FEATURES): $(call run_done,512p-feat) $(call man,train,$(SIZE))
	$(call msrun_cmd,$(@:.h5=)-msrun-logs,$(BIN)/precompute) --run $(call run_dir,512p-feat) $(call man,train,$(SIZE)) \
		--load_size $(SIZE2) --device_target $(DEVICE) --out $@

$(CLUSTERS): $(FEATURES)
	$(BIN)/cluster $< --n_clusters $(N_CLUSTERS) --out $@

# ENGINE=onnx: the same render from the run's ONNX export through onnxruntime, into render-<split>-onnx
render_source = $(if $(ENGINE_SUFFIX),--onnx $(call onnx_file,$(1)),--run $(call run_dir,$(1)) --engine $(ENGINE))
define render_rule
$(call page,$(1),$(2)): $(if $(ENGINE_SUFFIX),$(call onnx_file,$(1)),$(call run_done,$(1))) $(call man,$(2),$(SIZE_$(1))) $(if $(findstring feat,$(1)),$(CLUSTERS))
	$$(call msrun_cmd,$(call run_dir,$(1))/render-$(2)$(ENGINE_SUFFIX)-msrun-logs,$(BIN)/render) $(call render_source,$(1)) $(call man,$(2),$(SIZE_$(1))) \
		--out $(call run_dir,$(1))/render-$(2)$(ENGINE_SUFFIX) --overwrite $(if $(ENGINE_SUFFIX),,--device_target $(DEVICE)) \
		$(if $(findstring feat,$(1)),--clusters $(CLUSTERS)) $(RENDER_EXTRA)
endef
$(foreach mode,$(MODES),$(foreach split,train test val,$(eval $(call render_rule,$(mode),$(split)))))

# ---- bin/edit: the MODE run in the browser on DATA's test label maps (a server: prints its URL)
EDIT_EXTRA ?=#                     extra bin/edit options (e.g. --port 0 --preview_size 256 --out DIR)
edit: $(call run_done,$(MODE)) $(if $(ENGINE_SUFFIX),$(call onnx_file,$(MODE))) $(call man,test,$(SIZE_$(MODE))) $(if $(findstring feat,$(MODE)),$(CLUSTERS)) ## edit DATA's test label maps in the browser with the MODE run, through its ONNX export when there is one (ENGINE=onnx: export first); prints the URL, Ctrl-C stops
	$(BIN)/edit $(call run_dir,$(MODE)) $(if $(ENGINE_SUFFIX),--onnx $(call onnx_file,$(MODE)),--engine $(ENGINE)) --data $(call man,test,$(SIZE_$(MODE))) \
		$(if $(findstring feat,$(MODE)),--clusters $(CLUSTERS)) --device_target $(DEVICE) $(EDIT_EXTRA)
.PHONY: edit

# ---- deployment: the MODE run's generator (+ condition encoding) as a MindIR, sidecar beside it
export: $(call run_done,$(MODE)) ## export the MODE run as a MindIR at its training size (<run>/<run>-HxW.mindir + .json)
	$(BIN)/export --run $(call run_dir,$(MODE)) --device_target $(DEVICE) $(EXPORT_EXTRA)
.PHONY: export

export-onnx: $(call onnx_file,$(MODE)) ## export the MODE run as ONNX (opset 17, dynamic N/H/W; EXPORT_EXTRA=--half) to <run>/<run-name>.onnx + .json
define onnx_rule
$(call onnx_file,$(1)): $(call run_done,$(1))
	$(BIN)/export --run $(call run_dir,$(1)) --format ONNX --out $$@ --device_target $(DEVICE) $(EXPORT_EXTRA)
endef
$(foreach mode,$(MODES),$(eval $(call onnx_rule,$(mode))))
.PHONY: export-onnx
# ---- evaluate: FID (and KID) of a render against the split's real photos; with SEG= also the
# segmentation score (mIoU, pixel accuracy) against its label maps --------------------------------
metrics = $(call run_dir,$(1))/render-$(2)$(ENGINE_SUFFIX)/metrics.json# mode, split (ENGINE=onnx: the -onnx render)
evaluate-test: $(call metrics,$(MODE),test) ## FID (INCEPTION=pt_inception-...pth) and, with SEG=drn-d-105_ms_cityscapes.pth, mIoU/accuracy of render-test
evaluate-val: $(call metrics,$(MODE),val) ## the same for render-val
evaluate-nvidia: ## the same for render-nvidia's folder (NV_RUN/render-test): the published table's row
	$(BIN)/evaluate $(NV_RUN)/render-test $(EVAL_SCORES) --device_target $(DEVICE) $(EVAL_EXTRA)

# The weight files are not prerequisites: when one is missing, bin/evaluate says where to get it.
# Without SEG: the FID with INCEPTION. With SEG: the segmentation score, plus the FID when
# INCEPTION was given (command line or environment) or its default file is here.
inception_given = $(if $(strip $(INCEPTION)),$(or $(findstring command line,$(origin INCEPTION)),$(findstring environment,$(origin INCEPTION)),$(wildcard $(INCEPTION))))
EVAL_SCORES = $(if $(SEG),--seg $(SEG) --seg_size $(SEG_SIZE) $(if $(inception_given),--inception $(INCEPTION)),$(if $(strip $(INCEPTION)),--inception $(INCEPTION)))
# metrics.json is rewritten on every call (FORCE): SEG= or INCEPTION= may ask for other scores
# than the file holds; the real photos' FID features come from the cache.
define evaluate_rule
$(call metrics,$(1),$(2)): $(call page,$(1),$(2)) FORCE
	$(BIN)/evaluate $(call run_dir,$(1))/render-$(2)$(ENGINE_SUFFIX) $(EVAL_SCORES) \
		--device_target $(DEVICE) $(EVAL_EXTRA)
endef
$(foreach mode,$(MODES),$(foreach split,test val,$(eval $(call evaluate_rule,$(mode),$(split)))))
FORCE:# (no recipe, no file: always out of date)
.PHONY: evaluate-nvidia

# ---- demo: every mode end to end at toy size on a generated (or the given) dataset ----------
DEMO_TRAIN ?= 12
DEMO_TEST ?= 4
DEMO_WIDTH ?= 256
DEMO_HEIGHT ?= 128
DEMO_TIMER := outputs/$(DEMO_TAG)-started
# A demo setting unless the same variable was given on make's command line.
demo_var = $(1)=$(if $(filter command line,$(origin $(1))),$($(1)),$(2))
DEMO_VARS = $(DEMO_RUNS) \
	$(foreach s,$(DEMO_SETTINGS),$(call demo_var,$(firstword $(subst =, ,$(s))),$(lastword $(subst =, ,$(s))))) \
	'$(call demo_var,EXTRA,$(DEMO_EXTRA))'
# DEMO=1 on the next commands when the demo ran on the generated data; its DATA too otherwise
DEMO_ARGS = DEMO=1$(if $(filter $(DEMO_DATA),$(DATA)),, DATA=$(DATA))

demo: | $(STAMP) ## every mode end to end on a generated toy Cityscapes (or DATA=...) in ~9 min on 2 cores; prints the render page and the next commands (DEMO=1)
	@mkdir -p outputs && date +%s > $(DEMO_TIMER)
	$(MAKE) --no-print-directory demo-renders $(DEMO_VARS)
	@echo "demo: done in $$(( $$(date +%s) - $$(cat $(DEMO_TIMER)) )) s; render pages:" >&2; rm -f $(DEMO_TIMER)
	@for m in 512p 1024p 512p-feat; do echo "  $(CURDIR)/outputs/$(DEMO_TAG)-$$m/render-test/index.html" >&2; done
	@echo "demo: its runs, next (MODE: 512p, 1024p, 512p-feat or 1024p-feat):" >&2
	@echo "  make edit $(DEMO_ARGS) MODE=512p-feat     # paint label maps in the browser" >&2
	@echo "  make evaluate-test $(DEMO_ARGS) MODE=1024p  # FID (INCEPTION=: pytorch-fid's weights)" >&2
	@echo "  make export-onnx $(DEMO_ARGS) MODE=1024p  # or: make export ... (MindIR)" >&2
	@echo "$(CURDIR)/outputs/$(DEMO_TAG)-1024p-feat/render-test/index.html"

demo-renders: $(foreach mode,$(MODES),$(call page,$(mode),test)) ## render the test split with all four modes (what demo runs, with its settings)

bench-prepare: | $(STAMP) ## prepare's images/s on the 8 sample frames at 1024, --jobs 1 vs 2 (target 1.8x)
	$(PY) bench/bench_prepare.py
.PHONY: bench-prepare

bench-nets: $(STAMP) ## instance norms (exact, batch-norm form, group_norm) at 256x512 and 1024x2048, then G inference and G+D+VGG training step with each, ngf 64 256x512 and ngf 32 128x256 (median ms, peak RSS)
	$(PY) bench/bench_nets.py
.PHONY: bench-nets

bench-reductions: | $(STAMP) ## every reduction that grows with the image vs float64 at 2048x1024: instance norms (exact vs batch-norm form), E's pooling, loss means (~1 min)
	$(PY) bench/bench_reductions.py
.PHONY: bench-reductions

bench-train: | $(STAMP) ## train s/step of the 4 modes, full widths at 1/16 of the pixels (128x256, 256x512), + projected Cityscapes epoch (~15 min)
	$(PY) bench/bench_train.py
.PHONY: bench-train

bench-render: | $(STAMP) ## render's images/s on the 15 sample test maps, ngf 64: 512x1024 (4 maps), 256x512 (also --original_size), 64x128; overlapped vs in-loop PNG writing (~8 min)
	$(PY) bench/bench_render.py
.PHONY: bench-render

bench-export: | $(STAMP) ## bin/export time, size and RSS (MindIR, ONNX, ONNX --half) for the full 512p and 1024p generators; render from MindIR vs checkpoint (~8 min)
	$(PY) bench/bench_export.py
.PHONY: bench-export
bench-edit: | $(STAMP) ## bin/edit: start, edit -> preview latency (first, steady) with a 512p G (ngf 64, random), MindSpore vs its ONNX export in onnxruntime and OpenVINO, --preview_size 256 and 512; full size on demand (~15 min; three servers, ~7 GB together)
	$(PY) bench/bench_edit.py
.PHONY: bench-edit
bench-onnx: | $(STAMP) ## render --onnx (fp32, --half) vs --run at 512x1024, ngf 64: s/image, RSS, pixel differences in levels, FID change (INCEPTION_BENCH=real .pth; ~15 min)
	$(PY) bench/bench_onnx.py $(if $(INCEPTION_BENCH),--inception $(INCEPTION_BENCH)) $(BENCH_EXTRA)
.PHONY: bench-onnx
bench-evaluate: | $(STAMP) ## FID Inception features/s at 299x299; DRN-D-105 segmentation images/s, CPU s/image, peak RSS per --seg_engine (mindspore, onnxruntime, openvino) at 256x512 (batch 1, 4) and 512x1024, random weights, interleaved; the engines' agreement on the sample photos (~15 min quiet)
	$(PY) bench/bench_evaluate.py
.PHONY: bench-evaluate
NVIDIA ?=#                        NVIDIA/pix2pixHD checkout (bench-vs-nvidia, bench-import)
TORCH_PYTHON ?= python3#           a Python with torch + torchvision (bench-vs-nvidia, bench-import)
BENCH_EXTRA ?=#                    e.g. --big (512x1024 training rows), --only ROW,..., --runs N
BENCH_LOCK ?=#                     a file every large bench process holds an exclusive flock on while it runs (shared machines)
SEG_BENCH ?=#                      fyu/drn's drn-d-105_ms_cityscapes.pth for bench-precision's segmentation score
bench-vs-nvidia: | $(STAMP) ## p2phd vs NVIDIA's PyTorch networks, same shapes, interleaved: time and peak-memory ratios; render rows: NVIDIA fp32/bf16 vs bin/render's default path and each engine at 512x1024 and 2048x1024 (1024p G), minutes for 500 frames (NVIDIA=... TORCH_PYTHON=...; ~30 min)
	$(PY) bench/bench_vs_nvidia.py --nvidia $(NVIDIA) --torch-python $(TORCH_PYTHON) $(if $(BENCH_LOCK),--lock $(BENCH_LOCK)) $(BENCH_EXTRA)
.PHONY: bench-vs-nvidia
bench-precision: | $(STAMP) ## bf16 vs fp32 renders (OpenVINO) of the sample's 15 test maps: imported 1024p G (with NVIDIA=) and a briefly trained G: level differences; FID and segmentation change with INCEPTION_BENCH= SEG_BENCH= (~15 min)
	$(PY) bench/bench_precision.py $(if $(NVIDIA),--nvidia $(NVIDIA) --torch-python $(TORCH_PYTHON)) $(if $(INCEPTION_BENCH),--inception $(INCEPTION_BENCH)) $(if $(SEG_BENCH),--seg $(SEG_BENCH)) $(if $(BENCH_LOCK),--lock $(BENCH_LOCK)) $(BENCH_EXTRA)
.PHONY: bench-precision

# bench-vs-nvidia needs an NVIDIA checkout and torch: part of `make bench` only when NVIDIA= is given
bench: $(filter-out $(if $(NVIDIA),,bench-vs-nvidia),$(shell sed -nE 's/^(bench-[A-Za-z0-9_-]+):.*/\1/p' $(firstword $(MAKEFILE_LIST)))) ## run every benchmark (bench-*)

# ---- NVIDIA's trained models: bin/import (docs/nvidia.md) -----------------------------------
NV ?=#                             NVIDIA checkpoints folder for `make import` (checkpoints/<name>)
IMPORT_EXTRA ?=#                   extra bin/import options (e.g. --overwrite, --which_epoch 20)
NV_RUN ?= outputs/label2city_1024p_nvidia#  imported run that render-nvidia uses
NV_FULL ?= outputs/nv-full/label2city_1024p#  full-size G folder for bench-import (tests/fixtures/make_nvidia_fixtures.py --full outputs/nv-full)

import: | $(STAMP) ## import NVIDIA's pix2pixHD checkpoints folder NV as outputs/<name>_nvidia (no PyTorch); prints the run folder
	@test -n "$(NV)" || { echo "make import: give NV=path/to/checkpoints/<name>" >&2; exit 2; }
	$(BIN)/import $(NV) --checkpoints_dir outputs $(IMPORT_EXTRA)

# The imported run renders at 1024p size (SIZE2 wide, 2048 by default: Cityscapes' own size).
render-nvidia: $(call man,test,$(SIZE2)) ## render DATA's test split (Cityscapes: val) with the imported run NV_RUN; prints the folder
	$(BIN)/render --run $(NV_RUN) $< --out $(NV_RUN)/render-test --overwrite \
		--device_target $(DEVICE) $(RENDER_EXTRA)

bench-import: | $(STAMP) ## bin/import time and peak RSS for the full-size label2city_1024p G in NV_FULL; with NVIDIA= TORCH_PYTHON=, its 2048x1024 renders against NVIDIA's (relative error, PNG pixels that differ)
	@test -n "$(NV_FULL)" || { echo "make bench-import: give NV_FULL=path/to/checkpoints/label2city_1024p" >&2; exit 2; }
	$(PY) bench/bench_import.py $(NV_FULL) $(if $(NVIDIA),--nvidia $(NVIDIA) --torch-python $(TORCH_PYTHON))

.PHONY: import render-nvidia bench-import

clean: ## remove the demo's data, manifests and runs, partial files and caches (keeps other runs)
	rm -rf outputs/demo-* manifests/demo-* .pytest_cache .ruff_cache
	find manifests outputs -name '*.tmp' -prune -exec rm -rf {} +
	find p2phd tests bench -name __pycache__ -prune -exec rm -rf {} +

.PHONY: prepare train-512p train-1024p train-512p-feat train-1024p-feat \
	precompute cluster render-test render-val render-train evaluate-test evaluate-val bench \
	demo demo-renders clean
