# `make demo` and `make test` work on a fresh machine with Python 3.11 and pip.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHAPES := data/shapes
RUN := runs/shapes/alternating
CONFIG := configs/shapes/alternating.yaml
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE := 1

.PHONY: setup demo question-only test test-long test-fast lint clean

# Re-installs only when pyproject.toml changes; a second run does nothing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

$(SHAPES)/v2_shapes_val_annotations.json: | $(STAMP)
	$(BIN)/vqa make-shapes --out $(SHAPES) --train 20000 --val 2000 --seed 0

# Generate the shapes data, train, validate the best checkpoint (prints accuracy and the grounding
# scores of each attention level), answer the validation split with it and score the answers.
# Each `make demo` starts the demo run over (--overwrite); a plain `vqa fit` refuses to.
demo: setup $(SHAPES)/v2_shapes_val_annotations.json
	$(BIN)/vqa fit -c $(CONFIG) --overwrite
	$(BIN)/vqa validate -c $(CONFIG) --ckpt_path $(RUN)/checkpoints/best.ckpt
	$(BIN)/vqa predict -c $(CONFIG) --ckpt_path $(RUN)/checkpoints/best.ckpt
	$(BIN)/vqa evaluate --questions $(SHAPES)/v2_OpenEnded_shapes_val_questions.json \
		--annotations $(SHAPES)/v2_shapes_val_annotations.json \
		--results $(RUN)/results_val.json --out $(RUN)/metrics.json

# The same training with the image features zeroed: the shapes questions need the image.
question-only: setup $(SHAPES)/v2_shapes_val_annotations.json
	$(BIN)/vqa fit -c $(CONFIG) -c configs/shapes/question_only.yaml --overwrite
	$(BIN)/vqa predict -c $(CONFIG) -c configs/shapes/question_only.yaml \
		--ckpt_path runs/shapes/question_only/checkpoints/best.ckpt
	$(BIN)/vqa evaluate --questions $(SHAPES)/v2_OpenEnded_shapes_val_questions.json \
		--annotations $(SHAPES)/v2_shapes_val_annotations.json \
		--results runs/shapes/question_only/results_val.json \
		--out runs/shapes/question_only/metrics.json

# Everything but the tests marked long (killed and resumed runs, a minute or more each), under
# 15 minutes on 2 cores with the install; CI runs this, then `make test-long`.
test: setup
	$(BIN)/python -m pytest -q -m "not long"

test-long: setup
	$(BIN)/python -m pytest -q -m long

# The loop while developing: everything but the tests marked slow (subprocesses, DDP, resume,
# the notebook, compilation), well under 90 s on 2 cores.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check vqa tests scripts

clean:
	rm -rf runs lightning_logs wandb
