"""What codelora.llamacpp's base-logits check measures on GGUFs of the embedded SmolLM2-135M-Instruct: the right
file, the same weights re-quantised to other types, and other weights with identical metadata.

The check (llamacpp.base_logits_difference) feeds the probe chat prompt to llama.cpp on the GGUF and to
transformers on the base model (fp32, CPU) and reports, per position, rms(llama.cpp - transformers) / std(
transformers) over the vocabulary; the mean over the positions is compared with LOGIT_TOLERANCE[file type]. The
embedded model's transformers weights ARE the Q4_1 GGUF's, dequantised, so:

* `Q4_1 (own)`: the embedded GGUF itself: what llama.cpp's arithmetic alone adds (it also quantises activations
  to 8 bits in its quantised matrix products);
* `F16`, `Q8_0`, `Q5_0`, `Q4_0`: the dequantised weights quantised again with gguf-py (every 2-D weight; norms stay
  F32): the weight-rounding error of each type on top of that;
* `re-drawn`: the Q4_1 GGUF with every weight matrix's rows shuffled (same values, same metadata and tokenizer):
  a GGUF of other weights that the metadata checks accept.

Writes bench/results/base_gguf_check.json. Usage: .venv/bin/python bench/base_gguf_check.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "base_gguf_check.json"


def rewrite_gguf(src: Path, dst: Path, transform, file_type: int | None = None) -> Path:
    """Copy GGUF `src` to `dst` with each tensor passed through transform(name, data, tensor_type) -> (data, type)
    and, when given, general.file_type replaced. Metadata is otherwise copied as it is."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    arch = reader.fields["general.architecture"]
    writer = gguf.GGUFWriter(str(dst), bytes(arch.parts[arch.data[0]]).decode())
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == "general.file_type" and file_type is not None:
            value = file_type
        writer.add_key_value(field.name, value, vtype, sub_type=sub)
    out = []
    for t in reader.tensors:
        data, ttype = transform(t.name, np.array(t.data), t.tensor_type)
        out.append(data)
        writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes, ttype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for data in out:
        writer.write_tensor_data(data)
    writer.close()
    return dst


def requantised(src: Path, dst: Path, qtype_name: str) -> Path:
    """`src` with every 2-D weight dequantised and quantised again as `qtype_name` (F16, Q8_0, Q5_0, Q4_0)."""
    import gguf
    from gguf.quants import dequantize, quantize

    qtype = gguf.GGMLQuantizationType[qtype_name]
    file_type = {"F16": 1, "Q8_0": 7, "Q5_0": 8, "Q4_0": 2}[qtype_name]

    def transform(name, data, ttype):
        if ttype == gguf.GGMLQuantizationType.F32 and data.ndim < 2:
            return data, ttype
        w = dequantize(data, ttype).astype(np.float32)
        if qtype == gguf.GGMLQuantizationType.F16:
            return w.astype(np.float16), qtype
        return quantize(w, qtype), qtype

    return rewrite_gguf(src, dst, transform, file_type)


def redrawn(src: Path, dst: Path, seed: int = 0) -> Path:
    """`src` with every weight matrix's rows shuffled: other weights, the same metadata and quantisation."""
    rng = np.random.default_rng(seed)

    def transform(name, data, ttype):
        if data.ndim == 2 and data.shape[0] > 1:
            data = data[rng.permutation(data.shape[0])]
        return data, ttype

    return rewrite_gguf(src, dst, transform)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="write the GGUFs here (default: a temporary folder)")
    args = ap.parse_args()

    from codelora.config import SYSTEM_PROMPT
    from codelora.generation.backends import llamacpp as L
    from codelora.model.chat import render_prompt
    from codelora.model.sources import DEFAULT_EMBEDDED, embedded_gguf, load_tokenizer

    tok = load_tokenizer(DEFAULT_EMBEDDED)
    ids = tok.encode(render_prompt(tok, SYSTEM_PROMPT, L.PROBE_MESSAGE), add_special_tokens=False)
    own = embedded_gguf("smollm2-135m-instruct")
    work = args.keep or Path(tempfile.mkdtemp(prefix="codelora-gguf-check-"))
    work.mkdir(parents=True, exist_ok=True)
    cases = [("Q4_1 (own)", lambda: own)]
    cases += [(q, lambda q=q: requantised(own, work / f"{q}.gguf", q)) for q in ("F16", "Q8_0", "Q5_0", "Q4_0")]
    cases += [("re-drawn (Q4_1)", lambda: redrawn(own, work / "redrawn.gguf"))]
    rows = []
    for label, make in cases:
        path = make()
        t0 = time.time()
        per_position = L.base_logits_differences(path, DEFAULT_EMBEDDED, None, ids)
        ftype = L.gguf_file_type(path)
        row = {
            "gguf": label,
            "file_type": ftype,
            "mean": round(float(np.mean(per_position)), 4),
            "max": round(float(np.max(per_position)), 4),
            "tolerance": L.logit_tolerance(ftype),
            "passes": bool(np.mean(per_position) <= L.logit_tolerance(ftype)),
            "seconds": round(time.time() - t0, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    doc = {
        "date": datetime.date.today().isoformat(),
        "machine": platform.platform(),
        "model": DEFAULT_EMBEDDED,
        "probe_tokens": len(ids),
        "metric": "per position rms(llama.cpp - transformers) / std(transformers) over the vocabulary",
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
