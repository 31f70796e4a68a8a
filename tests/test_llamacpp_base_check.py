"""The base-GGUF check compares logits, not only metadata (issue 29.4): a GGUF of other weights with the embedded
model's exact metadata, vocabulary and tokenizer (its weight rows shuffled) passed the architecture, size and token
checks; its probe-prompt logits are refused with one line (exit 2). Numbers behind the tolerances:
bench/base_gguf_check.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the llamacpp backend needs it)")

import codelora.generation.backends.llamacpp as L  # noqa: E402
from codelora.errors import UserError  # noqa: E402
from codelora.model.sources import DEFAULT_EMBEDDED, embedded_gguf, load_tokenizer  # noqa: E402

SYSTEM = "You are a competitive programmer."


def redrawn_gguf(src: Path, dst: Path, seed: int = 0) -> Path:
    """GGUF `src` with every weight matrix's rows shuffled: other weights, identical metadata and quantisation."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    arch = reader.fields["general.architecture"]
    writer = gguf.GGUFWriter(str(dst), bytes(arch.parts[arch.data[0]]).decode())
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    rng = np.random.default_rng(seed)
    datas = []
    for t in reader.tensors:
        data = np.array(t.data)
        if data.ndim == 2 and data.shape[0] > 1:
            data = data[rng.permutation(data.shape[0])]
        datas.append(data)
        writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for data in datas:
        writer.write_tensor_data(data)
    writer.close()
    return dst


@pytest.fixture(scope="module")
def redrawn(tmp_path_factory):
    return redrawn_gguf(embedded_gguf("smollm2-135m-instruct"), tmp_path_factory.mktemp("gguf") / "redrawn.gguf")


def test_other_weights_with_the_same_metadata_are_refused(redrawn):
    tok = load_tokenizer(DEFAULT_EMBEDDED)
    L.check_base_gguf(embedded_gguf("smollm2-135m-instruct"), DEFAULT_EMBEDDED, None, tok, SYSTEM, threads=1)
    # the metadata, vocabulary and token checks alone accept it (what the check was before)
    L.check_base_gguf(redrawn, DEFAULT_EMBEDDED, None, tok, SYSTEM, logits=False)
    with pytest.raises(UserError, match=r"is not a GGUF of .*'s weights: its logits .* tolerance 1\.5 for a Q4_1"):
        L.check_base_gguf(redrawn, DEFAULT_EMBEDDED, None, tok, SYSTEM, threads=1)


def test_evaluate_with_a_wrong_base_gguf_is_one_line(redrawn, tmp_path, capsys):
    from codelora.cli import main

    rc = main(["evaluate", "--model", DEFAULT_EMBEDDED, "--benchmark", "humaneval", "--limit", "1", "--out",
               str(tmp_path / "e"), "--backend", "llamacpp", "--gguf", str(redrawn), "--threads", "1"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: eval.gguf: ") and "is not a GGUF of" in err[-1], err[-3:]
    assert not (tmp_path / "e" / "summary.json").exists()


@pytest.mark.parametrize(
    "file_type, tolerance",
    [("F16", 0.05), ("BF16", 0.05), ("Q8_0", 0.25), ("Q5_K_M", 0.8), ("Q4_K_M", 1.5), ("IQ4_XS", 1.5), ("Q2_K", 2.5)],
)
def test_tolerance_per_file_type(file_type, tolerance):
    assert L.logit_tolerance(file_type) == tolerance
