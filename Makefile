# Two entry points do all setup on a fresh machine: `make demo` and `make test`.
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.codelora-installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM = false

.PHONY: demo test lint sandbox-deps browser-deps embedded clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --progress-bar on -e '.[dev]'  # ~2 minutes on a fresh clone: let pip show it
	touch $@

# bubblewrap is the sandbox and libseccomp2 builds its system-call filter; without them codelora
# falls back (process isolation only / no filter) and says so once per run.
sandbox-deps:
	@{ command -v bwrap >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q libseccomp.so.2; } || \
	  { command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q bubblewrap libseccomp2 >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && \
	    apt-get install -y -q bubblewrap libseccomp2 >/dev/null 2>&1; }; }; } || \
	  echo "note: bubblewrap or libseccomp2 not installed; the sandbox will fall back (see docs/sandbox.md)"

# Debian's chromium renders report.html in the browser test; without it that one test is skipped.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "note: chromium not installed; the report's browser test will be skipped"

# Convert the embedded SmolLM2 GGUF once into a verified safetensors cache.
embedded: $(STAMP)
	$(PY) -c "from codelora.model.sources import ensure_embedded; print(ensure_embedded('smollm2-135m-instruct'))"

# The whole workflow on the embedded model, a few minutes on 2 CPU cores:
# train -> a few GRPO steps from final (rl: the sandbox's verdict on generated hidden tests as the reward) ->
# answer one problem -> grade a LiveCodeBench-format fixture and a partial HumanEval samples file ->
# evaluate base and final on the held-out split (and re-grade final's samples file with score; final again with the
# llamacpp backend, into its own folder: quantised answers never mix with the run's) -> compare every
# checkpoint and choose -> report -> export (merged, verified) -> push --dry-run.
# A finished demo run is reused (every later step then reuses its results too): `make demo FRESH=1` starts over.
# An interrupted one continues from its last complete checkpoint.
demo: $(STAMP) sandbox-deps embedded
	$(if $(FRESH),rm -rf outputs/demo)
	@if [ -d outputs/demo/checkpoints ]; then \
	  echo "outputs/demo exists: reusing it (make demo FRESH=1 starts over)"; \
	  $(VENV)/bin/codelora train --run outputs/demo --resume; \
	else $(VENV)/bin/codelora train --config demo --run outputs/demo --set train.execution_eval=heldout; fi
	@if [ -d outputs/demo/rl/checkpoints ]; then $(VENV)/bin/codelora rl --run outputs/demo --resume; \
	else $(VENV)/bin/codelora rl --run outputs/demo; fi
	$(VENV)/bin/codelora generate --config demo --adapter outputs/demo/final --problem-file examples/sum_of_two.txt
	$(VENV)/bin/codelora score --benchmark livecodebench --problems tests/fixtures/lcb_problems.jsonl \
	  --samples examples/lcb_samples.json --out outputs/demo/score-fixture
	$(VENV)/bin/codelora score --benchmark livecodebench --protocol course --problems tests/fixtures/lcb_problems.jsonl \
	  --samples examples/lcb_samples.json --out outputs/demo/score-fixture-course
	$(VENV)/bin/codelora score --benchmark humaneval --samples examples/humaneval_partial.jsonl --allow-partial \
	  --out outputs/demo/score-humaneval-partial
	$(VENV)/bin/codelora evaluate --run outputs/demo --benchmark heldout --models base,final
	$(VENV)/bin/codelora score --benchmark heldout --problems outputs/demo/eval/heldout/problems.jsonl \
	  --samples outputs/demo/eval/heldout/final/samples.jsonl --out outputs/demo/score-heldout-final
	$(VENV)/bin/codelora evaluate --model embedded:smollm2-135m-instruct --adapter outputs/demo/final --benchmark heldout \
	  --problems outputs/demo/eval/heldout/problems.jsonl --backend llamacpp --out outputs/demo/eval-llamacpp-final
	$(VENV)/bin/codelora compare --run outputs/demo --benchmark heldout
	$(VENV)/bin/codelora report --run outputs/demo
	$(VENV)/bin/codelora export --run outputs/demo --checkpoint best --if-base final --merge --out outputs/demo/export --force
	$(VENV)/bin/codelora push --export outputs/demo/export --repo your-user/codelora-demo --dry-run
	@echo "report: $(CURDIR)/outputs/demo/report.html"

test: $(STAMP) sandbox-deps browser-deps
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check codelora tests bench && $(VENV)/bin/ruff format --check codelora tests bench

clean:
	rm -rf $(VENV) outputs
