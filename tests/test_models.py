import json
import os

import pytest
import torch

from codelora.errors import UserError
from codelora.model import sources as models
from codelora.model.sources import DEFAULT_EMBEDDED, ensure_embedded, load_model, parse_source


@pytest.fixture(scope="module")
def embedded_dir():
    return ensure_embedded("smollm2-135m-instruct")


def test_parse_source_kinds(tmp_path):
    assert parse_source("Qwen/Qwen2.5-Coder-1.5B-Instruct").kind == "hub"
    assert parse_source("embedded:smollm2-135m-instruct").kind == "embedded"
    assert parse_source("tiny-random:llama").name == "llama"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert parse_source(str(tmp_path / "m")).kind == "local"


@pytest.mark.parametrize(
    "source, needle",
    [
        ("embedded:gpt5", "unknown embedded model 'gpt5'"),
        ("tiny-random:gpt2", "unknown tiny-random architecture"),
        ("./no/such/folder", "model folder not found"),
        ("justaname", "neither a hub id"),
    ],
)
def test_bad_sources(source, needle):
    with pytest.raises(UserError, match=needle):
        parse_source(source)


def test_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(UserError, match="is not a model folder"):
        load_model(str(tmp_path))


def test_hub_model_offline_is_one_clear_error():
    with pytest.raises(UserError, match="not in the local Hugging Face cache.*embedded:smollm2"):
        load_model("Qwen/Qwen2.5-Coder-1.5B-Instruct")


@pytest.mark.parametrize("arch, cls", [("qwen2", "Qwen2ForCausalLM"), ("llama", "LlamaForCausalLM")])
def test_tiny_random_is_the_real_architecture_and_deterministic(arch, cls):
    m1, tok = load_model(f"tiny-random:{arch}")
    m2, _ = load_model(f"tiny-random:{arch}")
    assert type(m1).__name__ == cls
    assert m1.config.hidden_size <= 64
    assert m1.get_input_embeddings().weight.shape[0] == len(tok)
    assert torch.equal(m1.lm_head.weight, m2.lm_head.weight)
    assert m1.config._attn_implementation == "sdpa"


def test_embedded_cache_is_verified_and_loads(embedded_dir):
    manifest = json.loads((embedded_dir / "codelora-manifest.json").read_text())
    assert "model.safetensors" in manifest["sha256"]
    model, tok = load_model(DEFAULT_EMBEDDED)
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert "<|im_start|>" in tok.chat_template  # ChatML, like Qwen2.5
    # the greedy continuation recorded at conversion (from the GGUF) is reproduced from the cache
    ids = models._greedy_ids(model, tok)
    assert ids == manifest["check_greedy_ids"]


def test_corrupted_cache_is_detected_and_rebuilt(embedded_dir, tmp_path, monkeypatch):
    # a hard-linked copy of the real cache, with one file replaced (not edited in place)
    fake = tmp_path / "embedded" / "smollm2-135m-instruct"
    fake.mkdir(parents=True)
    for f in embedded_dir.iterdir():
        os.link(f, fake / f.name)
    (fake / "tokenizer_config.json").unlink()
    (fake / "tokenizer_config.json").write_text("{}")
    assert "checksum mismatch" in models._verify_embedded(fake)
    monkeypatch.setenv("CODELORA_CACHE", str(tmp_path))
    rebuilt = []
    monkeypatch.setattr(models, "_convert_embedded", lambda name, target: rebuilt.append(target))
    models.ensure_embedded("smollm2-135m-instruct", quiet=True)
    assert rebuilt == [fake] and not fake.exists()  # the bad cache was removed, conversion asked for


def test_interrupted_conversion_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CODELORA_CACHE", str(tmp_path))
    calls = []

    def interrupt_after_save(model, tok):
        calls.append(1)
        if len(calls) == 2:  # the check after writing the weights: simulate Ctrl-C there
            raise KeyboardInterrupt
        return [1, 2, 3]

    monkeypatch.setattr(models, "_greedy_ids", interrupt_after_save)
    with pytest.raises(KeyboardInterrupt):
        models.ensure_embedded("smollm2-135m-instruct", quiet=True)
    target = models.embedded_dir("smollm2-135m-instruct")
    assert not target.exists()  # only a .tmp-* folder, which is never loaded as valid
    assert models._verify_embedded(target) is not None


def test_cache_of_an_older_format_is_rebuilt(embedded_dir, tmp_path):
    # a cache written before format 2 (no pre-tokenizer fix) is self-consistent but must not be used
    old = tmp_path / "old"
    old.mkdir()
    for f in embedded_dir.iterdir():
        os.link(f, old / f.name)
    manifest = json.loads((embedded_dir / "codelora-manifest.json").read_text())
    del manifest["format"]
    (old / "codelora-manifest.json").unlink()
    (old / "codelora-manifest.json").write_text(json.dumps(manifest))
    assert "cache format 1, now 2" in models._verify_embedded(old)
    assert models._verify_embedded(embedded_dir) is None
