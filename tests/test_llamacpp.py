"""The llamacpp backend on the embedded model: the PEFT -> GGUF adapter conversion changes llama.cpp's logits as
the adapter changes HF's (q/k permutation, rsLoRA and alpha_pattern scales included), adapters llama.cpp cannot
apply and base GGUFs of another model are refused with one line, sampling follows the HF backend's rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the llamacpp backend needs it)")

import codelora.generation.backends.llamacpp as L  # noqa: E402
from codelora.errors import UserError  # noqa: E402
from codelora.generation.generate import Sampling  # noqa: E402
from codelora.model.chat import prompt_ids  # noqa: E402
from codelora.model.sources import DEFAULT_EMBEDDED, embedded_gguf, load_model, model_config  # noqa: E402

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SYSTEM = "You are a competitive programmer."
PROBLEM = "Read two integers a and b from standard input and print their sum."


@pytest.fixture(scope="module")
def base():
    """(HF model, tokenizer, prompt ids, HF next-token logits, llama.cpp next-token logits) of the embedded base."""
    import torch

    model, tok = load_model(DEFAULT_EMBEDDED, dtype="fp32", device="cpu")
    ids = prompt_ids(tok, SYSTEM, PROBLEM)
    with torch.no_grad():
        hf = model(torch.tensor([ids])).logits[0, -1].numpy()
    return model, tok, ids, hf, _llama_logits(ids, None)


def _llama_logits(ids: list[int], lora: Path | None) -> np.ndarray:
    from llama_cpp import Llama, llama_get_logits_ith

    llm = Llama(
        model_path=str(embedded_gguf("smollm2-135m-instruct")),
        lora_path=str(lora) if lora else None,
        n_ctx=len(ids) + 8,
        # one thread: llama.cpp's threads wait for each other at every layer, and on a busy CI machine two of them
        # are several times slower than one
        n_threads=1,
        n_threads_batch=1,
        verbose=False,
    )
    try:
        llm.eval(ids)
        return np.ctypeslib.as_array(llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).copy()
    finally:
        llm.close()


def _adapted(base, tmp_path: Path, **lora) -> tuple[np.ndarray, np.ndarray]:
    """(change HF's logits get from a random adapter, change llama.cpp's get from its GGUF conversion)."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, _, ids, hf_base, llama_base = base
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, init_lora_weights=False, **lora))
    try:
        with torch.no_grad():
            hf = peft_model(torch.tensor([ids])).logits[0, -1].numpy()
        peft_model.save_pretrained(str(tmp_path / "adapter"))
    finally:
        peft_model.unload()  # the module-scoped base model gets its own layers back
    return hf - hf_base, _llama_delta(base, tmp_path / "adapter", tmp_path / "adapter.gguf")


def _llama_delta(base, adapter: Path, out: Path) -> np.ndarray:
    """The change llama.cpp's next-token logits get from `adapter` converted to the GGUF `out`."""
    _, _, ids, _, llama_base = base
    L.convert_adapter(adapter, model_config(DEFAULT_EMBEDDED), out)
    return _llama_logits(ids, out) - llama_base


@pytest.mark.parametrize(
    "lora",
    [
        # q/k only: without the q/k row permutation llama.cpp's change has correlation about 0 with HF's
        {"target_modules": ["q_proj", "k_proj"]},
        {"target_modules": ALL_LINEAR},
        # scales llama.cpp does not apply itself, folded into lora_B
        {"target_modules": ["q_proj", "v_proj", "down_proj"], "use_rslora": True},
        {
            "target_modules": ["q_proj", "v_proj", "down_proj"],
            "alpha_pattern": {"v_proj": 4},
            "rank_pattern": {"down_proj": 4},
        },
    ],
    ids=["qk", "all-linear", "rslora", "patterns"],
)
def test_converted_adapter_changes_llama_cpp_logits_as_hf(base, tmp_path, lora, monkeypatch):
    hf_delta, llama_delta = _adapted(base, tmp_path, **lora)
    assert np.abs(hf_delta).mean() > 0.5  # the adapter does change the model (Q4_1 noise is ~0.1)
    corr = float(np.corrcoef(hf_delta, llama_delta)[0, 1])
    slope = float((hf_delta * llama_delta).sum() / (hf_delta * hf_delta).sum())  # a wrong scale moves this
    assert corr > 0.95, corr
    assert 0.85 < slope < 1.2, slope
    if lora["target_modules"] == ["q_proj", "k_proj"]:
        # the check is sharp enough to catch a conversion without the q/k row permutation
        monkeypatch.setattr(L, "_permute_rows", lambda b, n_head: b)
        wrong = _llama_delta(base, tmp_path / "adapter", tmp_path / "unpermuted.gguf")
        assert float(np.corrcoef(hf_delta, wrong)[0, 1]) < 0.5


def test_converted_adapter_metadata(adapter_dir, tmp_path):
    from gguf import GGUFReader

    L.convert_adapter(adapter_dir, model_config(DEFAULT_EMBEDDED), tmp_path / "adapter.gguf")
    reader = GGUFReader(str(tmp_path / "adapter.gguf"))

    def value(key):
        f = reader.fields[key]
        part = f.parts[f.data[0]]
        return bytes(part).decode() if f.types[0].name == "STRING" else part.tolist()[0]

    assert value("general.type") == "adapter" and value("adapter.type") == "lora"
    assert value("general.architecture") == "llama" and value("adapter.lora.alpha") == 16.0
    names = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}
    assert len(names) == 30 * 2 * 2
    # gguf shapes are ne order: lora_a (in, r), lora_b (r, out)
    assert names["blk.0.attn_q.weight.lora_a"] == (576, 8) and names["blk.0.attn_q.weight.lora_b"] == (8, 576)
    assert names["blk.29.ffn_down.weight.lora_a"] == (1536, 8)


# ---------------------------------------------------------------- refused adapters and base GGUFs


@pytest.fixture(scope="module")
def adapter_dir(base, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapter")
    _adapted(base, folder, target_modules=["q_proj", "down_proj"])
    return folder / "adapter"


def _edited(adapter_dir: Path, tmp_path: Path, **config) -> Path:
    out = tmp_path / "edited"
    shutil.copytree(adapter_dir, out)
    acfg = json.loads((out / "adapter_config.json").read_text())
    acfg.update(config)
    (out / "adapter_config.json").write_text(json.dumps(acfg))
    return out


@pytest.mark.parametrize(
    "config, message",
    [
        ({"use_dora": True}, "use_dora=True: llama.cpp cannot apply DoRA"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save=['lm_head']"),
        ({"peft_type": "IA3"}, "a IA3 adapter"),
        ({"lora_alpha": 0}, "lora_alpha=0"),
    ],
)
def test_adapters_llama_cpp_cannot_apply_are_refused(adapter_dir, tmp_path, config, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        L.convert_adapter(_edited(adapter_dir, tmp_path, **config), model_config(DEFAULT_EMBEDDED), tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_adapter_with_a_non_lora_tensor_is_refused(adapter_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = _edited(adapter_dir, tmp_path)
    tensors = load_file(folder / "adapter_model.safetensors")
    tensors["base_model.model.model.embed_tokens.lora_embedding_A"] = np.zeros((8, 49152), np.float32)
    save_file(tensors, folder / "adapter_model.safetensors")
    with pytest.raises(UserError, match="embed_tokens.lora_embedding_A is not a lora_A/lora_B weight"):
        L.convert_adapter(folder, model_config(DEFAULT_EMBEDDED), tmp_path / "x.gguf")


def test_base_gguf_of_another_model_is_refused(base, tmp_path):
    _, tok, *_ = base
    gguf = embedded_gguf("smollm2-135m-instruct")
    L.check_base_gguf(gguf, DEFAULT_EMBEDDED, None, tok, SYSTEM)  # its own GGUF passes
    with pytest.raises(UserError, match=r"is a 'llama' model; tiny-random:qwen2 is 'qwen2'"):
        L.check_base_gguf(gguf, "tiny-random:qwen2", None, tok, SYSTEM)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    with pytest.raises(UserError, match="is not a readable GGUF file"):
        L.check_base_gguf(junk, DEFAULT_EMBEDDED, None, tok, SYSTEM)


def test_an_hf_base_needs_a_gguf():
    with pytest.raises(UserError, match="needs a GGUF file of org/model's weights: pass --gguf FILE"):
        L.base_gguf("org/model", None)
    with pytest.raises(UserError, match="eval.gguf: /nonexistent.gguf: no such file"):
        L.base_gguf("org/model", "/nonexistent.gguf")
    assert L.base_gguf(DEFAULT_EMBEDDED, None) == embedded_gguf("smollm2-135m-instruct")


# ---------------------------------------------------------------- sampling


def test_next_token_follows_the_hf_backends_rule():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    greedy = Sampling(True, 0.0, 1.0, 8, 0)
    assert L.next_token(logits, greedy, None) == 0
    # top_p 0.7: 0.5 alone is under it, 0.5 + 0.3 crosses it: {0, 1} kept (the crossing token too), renormalised
    sampled = Sampling(False, 1.0, 0.7, 8, 0)
    rng = np.random.default_rng(1)
    draws = np.array([L.next_token(logits, sampled, rng) for _ in range(4000)])
    assert set(draws.tolist()) == {0, 1}
    assert abs((draws == 0).mean() - 0.5 / 0.8) < 0.03
    # temperature before top_p (as HF): at temperature 2 the probabilities are ~[.38, .29, .21, .12], so three
    # tokens are kept; top_p on the untempered probabilities would keep two
    hot = Sampling(False, 2.0, 0.7, 8, 0)
    draws = np.array([L.next_token(logits, hot, rng) for _ in range(4000)])
    assert set(draws.tolist()) == {0, 1, 2}
    # seeded: the same seed draws the same tokens
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    assert [L.next_token(logits, hot, rng_a) for _ in range(50)] == [
        L.next_token(logits, hot, rng_b) for _ in range(50)
    ]


# ---------------------------------------------------------------- codelora evaluate --backend llamacpp


def _problems(tmp_path: Path) -> Path:
    rows = [
        {"task_id": "sum", "prompt": PROBLEM, "tests": [{"input": "2 3\n", "output": "5"}]},
        {"task_id": "double", "prompt": "Read an integer n and print 2*n.", "tests": [{"input": "4\n", "output": "8"}]},
    ]
    path = tmp_path / "heldout.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _evaluate(tmp_path: Path, *extra: str) -> tuple[int, dict]:
    from codelora.cli import main

    model = [] if "--model" in extra else ["--model", DEFAULT_EMBEDDED]
    if "llamacpp" in extra:  # one thread: on a busy CI machine two spin-waiting threads are several times slower
        extra = (*extra, "--threads", "1")
    argv = ["evaluate", *model, "--benchmark", "heldout", "--problems", str(_problems(tmp_path))]
    # sampled: two backends' answers then differ (different random streams), so a mix-up of them shows
    argv += ["--out", str(tmp_path / "eval"), "--max-new-tokens", "12", "--temperature", "1", "--workers", "1", *extra]
    rc = main(argv)
    summary = tmp_path / "eval" / "summary.json"
    return rc, json.loads(summary.read_text()) if rc == 0 else {}


def test_evaluate_records_the_backend_and_hf_never_reuses_its_answers(adapter_dir, tmp_path):
    from codelora.files import sha256_file
    from codelora.run import results as run_results

    gguf_sha = sha256_file(embedded_gguf("smollm2-135m-instruct"))
    rc, lc = _evaluate(tmp_path, "--adapter", str(adapter_dir), "--backend", "llamacpp")
    assert rc == 0
    assert lc["generation"]["backend"] == "llamacpp" and lc["generation"]["generated"] == 2
    assert lc["generation"]["gguf"] == str(embedded_gguf("smollm2-135m-instruct"))
    assert lc["provenance"]["generator"] == {"backend": "llamacpp", "gguf_sha256": gguf_sha}
    records = [json.loads(x) for x in (tmp_path / "eval" / "generations.jsonl").read_text().splitlines()]
    assert {(r["backend"], r["model"]["gguf_sha256"]) for r in records} == {("llamacpp", gguf_sha)}
    assert all(r["new_tokens"] >= 1 for r in records)

    rc, hf = _evaluate(tmp_path, "--adapter", str(adapter_dir))  # the default backend: transformers
    assert rc == 0
    assert hf["generation"]["backend"] == "hf" and (hf["generation"]["generated"], hf["generation"]["reused"]) == (2, 0)
    assert "generator" not in hf["provenance"] and hf["result_key"] != lc["result_key"]
    records = [json.loads(x) for x in (tmp_path / "eval" / "generations.jsonl").read_text().splitlines()]
    answers = {
        b: {(r["task_id"], 0): r["code"] or r["raw"] for r in records if r["backend"] == b} for b in ("hf", "llamacpp")
    }
    assert answers["hf"] != answers["llamacpp"]
    # each summary shows its own backend's answers (the HF ones, stored last, would otherwise win for both)
    assert run_results.read_answers(tmp_path / "eval", lc) == answers["llamacpp"]
    assert run_results.read_answers(tmp_path / "eval", hf) == answers["hf"]

    rc, again = _evaluate(tmp_path, "--adapter", str(adapter_dir), "--backend", "llamacpp")
    assert rc == 0 and (again["generation"]["generated"], again["generation"]["reused"]) == (0, 2)
    assert again["result_key"] == lc["result_key"]


def test_evaluate_bad_gguf_inputs_are_one_line(adapter_dir, tmp_path, capsys):
    from codelora.model.sources import embedded_dir, ensure_embedded

    ensure_embedded("smollm2-135m-instruct")
    gguf = str(embedded_gguf("smollm2-135m-instruct"))
    local = str(embedded_dir("smollm2-135m-instruct"))  # the embedded model as an HF folder: a GGUF is not implied
    converted = tmp_path / "adapter.gguf"
    L.convert_adapter(adapter_dir, model_config(DEFAULT_EMBEDDED), converted)
    cases = [
        (["--model", local, "--backend", "llamacpp"], "needs a GGUF file of"),
        (["--model", "tiny-random:llama", "--backend", "llamacpp", "--gguf", gguf], "exists only in memory"),
        (["--model", "tiny-random:qwen2", "--backend", "llamacpp"], "exists only in memory"),
        (["--backend", "llamacpp", "--gguf", str(converted)], "is a GGUF adapter, not a model"),
        (["--backend", "llamacpp", "--gguf", str(tmp_path / "none.gguf")], "none.gguf: no such file"),
        (["--gguf", gguf], "--gguf is a llamacpp backend option; add --backend llamacpp"),
    ]
    for extra, message in cases:
        rc, _ = _evaluate(tmp_path, *extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err[-1].startswith("error: ") and message in err[-1], (extra, err[-1:])
        assert not any("Traceback" in line for line in err)


def test_compare_refuses_answers_of_different_backends():
    from codelora.selection.compare import check_consistent

    def ev(generator):
        prov = {"protocol": None, **({"generator": generator} if generator else {})}
        return {"summary": {"benchmark": "heldout", "provenance": prov, "sampling": {}}, "problems": {"a": {}}}

    llama = {"backend": "llamacpp", "gguf_sha256": "ab" * 32}
    assert check_consistent({"base": ev(llama), "final": ev(llama)}, force=False) == []
    with pytest.raises(UserError, match="base and final were evaluated with different generation backends"):
        check_consistent({"base": ev(llama), "final": ev(None)}, force=False)
    assert check_consistent({"base": ev(llama), "final": ev(None)}, force=True)[0]["differs"] == "generator"


def test_model_card_says_which_scores_came_from_the_quantised_base():
    from codelora.publish import model_card

    summary = {"sampling": {"greedy": True, "max_new_tokens": 160}, "provenance": {"limit": None}}
    assert model_card._decoding(summary) == "greedy, 160 new tokens"
    summary["provenance"]["generator"] = {"backend": "llamacpp", "gguf_sha256": "ab" * 32}
    assert model_card._decoding(summary) == "greedy, 160 new tokens, by llamacpp on a quantised GGUF of the base"


def test_compare_evaluates_missing_models_with_the_existing_results_backend():
    from codelora.selection.compare import matching_options

    summary = {
        "sampling": {"n": 1, "greedy": True, "max_new_tokens": 160, "seed": 42},
        "provenance": {"limit": None, "generator": {"backend": "llamacpp", "gguf_sha256": "ab" * 32}},
        "generation": {"backend": "llamacpp", "gguf": "/models/base.gguf"},
    }
    got = matching_options({"summary": summary, "problems": {}})
    assert (got["backend"], got["gguf"]) == ("llamacpp", "/models/base.gguf")
    del summary["provenance"]["generator"]
    assert "backend" not in matching_options({"summary": summary, "problems": {}})


@pytest.mark.parametrize("arch, permuted", [("qwen2", False), ("llama", True)])
def test_tiny_architectures_name_and_permute_as_llama_cpp(tmp_path, arch, permuted):
    """No llama.cpp GGUF of a Qwen2 model is at hand: its conversion is checked for names and (no) permutation."""
    import torch
    from gguf import GGUFReader
    from peft import LoraConfig, get_peft_model

    from codelora.model.sources import build_tiny_random

    torch.manual_seed(0)
    model = get_peft_model(
        build_tiny_random(arch, vocab_size=256),
        LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=["q_proj", "k_proj", "up_proj"]),
    )
    model.save_pretrained(str(tmp_path / "a"))
    L.convert_adapter(tmp_path / "a", model_config(f"tiny-random:{arch}"), tmp_path / "a.gguf")
    reader = GGUFReader(str(tmp_path / "a.gguf"))
    got = {t.name: np.array(t.data).reshape([int(x) for x in reversed(t.shape)]) for t in reader.tensors}
    layer = model.base_model.model.model.layers[1]
    for module, name, heads in (("q_proj", "attn_q", 4), ("k_proj", "attn_k", 2), ("mlp.up_proj", "ffn_up", None)):
        lin = layer.get_submodule(module if "." in module else f"self_attn.{module}")
        b = lin.lora_B["default"].weight.detach().numpy()
        a = lin.lora_A["default"].weight.detach().numpy()
        assert np.array_equal(got[f"blk.1.{name}.weight.lora_a"], a)
        want = L._permute_rows(b, heads) if permuted and heads else b
        assert np.array_equal(got[f"blk.1.{name}.weight.lora_b"], want)
        if permuted and heads:
            assert not np.array_equal(want, b)
