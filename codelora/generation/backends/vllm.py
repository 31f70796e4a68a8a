"""The `vllm` generation backend (GPU machines; `pip install codelora[vllm]`). UNVERIFIED in this project's CI: no
GPU or vLLM here; tests with a stand-in module check what is sent to vLLM.

`--vllm-mode merge` (default) merges each adapter into the base in fp32 (checked as the HF backend's merge; an
adapter that cannot be merged exactly is refused) and serves the merged copy; `--vllm-mode lora` serves every
checkpoint as a LoRA adapter of one engine on the base, its max_lora_rank covering every adapter of the evaluation.
"""

from __future__ import annotations

import copy
import gc
import os
import shutil
from pathlib import Path

from codelora.errors import UserError
from codelora.files import follow_umask
from codelora.generation.backends import Backend, ModelSpec, register
from codelora.run import layout as runs

VLLM_MODES = ("merge", "lora")

# The max_lora_rank values vLLM accepts (vllm/config/lora.py `MaxLoRARanks`; releases before 0.10 allowed
# 8..256 or 8..512 of these). Used when the installed vLLM does not expose its own set.
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def adapter_rank(adapter: str | Path) -> int:
    """Largest LoRA rank of a PEFT adapter folder: `r`, or a larger one in its `rank_pattern`."""
    from codelora.files import read_json

    acfg = read_json(Path(adapter) / "adapter_config.json")
    return max([int(acfg.get("r") or 8), *(int(v) for v in (acfg.get("rank_pattern") or {}).values())])


def vllm_max_lora_rank(ranks: list[int], allowed: tuple[int, ...] | None = None) -> int:
    """The smallest max_lora_rank vLLM accepts that covers every rank in `ranks` (an evaluation's adapters), so
    one engine serves them all. `allowed`: vLLM's set (default: the installed vLLM's, else VLLM_MAX_LORA_RANKS).
    UserError when an adapter is above vLLM's largest."""
    if allowed is None:
        try:
            import typing

            from vllm.config.lora import MaxLoRARanks

            allowed = typing.get_args(MaxLoRARanks) or VLLM_MAX_LORA_RANKS
        except Exception:  # noqa: BLE001 - not installed, or a release without that name
            allowed = VLLM_MAX_LORA_RANKS
    need = max(ranks, default=1)
    fits = [a for a in sorted(allowed) if a >= need]
    if not fits:
        raise UserError(
            f"a LoRA adapter of rank {need} is above vLLM's largest max_lora_rank ({max(allowed)}); "
            "use --vllm-mode merge or --backend hf"
        )
    return fits[0]


@register
class VllmBackend(Backend):
    """vLLM generation (GPU machines; optional extra). UNVERIFIED in this project's CI: no GPU or vLLM here.

    mode `merge`: the adapter is merged into the base (in fp32, then saved) and served as a plain model -
    fastest for one adapter (unmerged LoRA serving costs up to ~50% throughput, vllm #10062).
    mode `lora`: one engine on the base model serves every adapter as a LoRA request - no merged copy
    per checkpoint, so it is the faster choice when many checkpoints of a large model are compared. Its
    max_lora_rank covers every adapter of the evaluation (`adapters`), fixed before the engine is built.
    """

    name = "vllm"

    @classmethod
    def create(cls, cfg, opts, adapters, source):
        mode = opts.vllm_mode or cfg.eval.vllm_mode
        if mode not in VLLM_MODES:
            raise UserError(f"unknown --vllm-mode {mode!r}; choose from {', '.join(VLLM_MODES)}")
        return cls(cfg, mode, adapters)

    def __init__(self, cfg, mode: str = "merge", adapters: list[str] = ()):
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise UserError("the vllm backend needs vLLM: pip install codelora[vllm] (GPU machines)") from None
        self.cfg, self.mode = cfg, mode
        self.engine = None
        self.engine_for: str | None = None
        self.lora_ids: dict[str, int] = {}
        self.max_lora_rank = vllm_max_lora_rank([adapter_rank(a) for a in adapters]) if adapters else None

    def _engine(self, path: str, enable_lora: bool):
        from vllm import LLM

        if self.engine_for != path:
            self.close()
            kwargs: dict = {"model": path, "seed": self.cfg.eval.seed, "dtype": "auto"}
            if enable_lora:
                kwargs.update(enable_lora=True, max_lora_rank=self.max_lora_rank or 16, max_loras=1)
            self.engine = LLM(**kwargs)
            self.engine_for = path
        return self.engine

    def _merged(self, spec: ModelSpec, work: Path) -> str:
        import torch

        from codelora.model.chat import inference_model, load_with_adapter

        # named by the adapter's identity (weights + config): a retrained checkpoint or an edited lora_alpha never
        # reuses a stale merged copy
        target = work / f"merged-{(runs.adapter_sha256(spec.adapter) or 'none')[:12]}"
        if not (target / "config.json").is_file():
            cpu_cfg = copy.deepcopy(self.cfg)
            cpu_cfg.model.device, cpu_cfg.model.dtype = "cpu", "fp32"  # merge in fp32, then cast (peft #1388)
            model, tok = load_with_adapter(spec.source, spec.adapter, cpu_cfg)
            model, _ = inference_model(model, tok, self.cfg.data.system_prompt, require_merge=True)
            tmp = target.with_name(target.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            model.to(torch.bfloat16).save_pretrained(tmp)
            tok.save_pretrained(tmp)
            follow_umask(tmp)  # safetensors writes 0600
            os.replace(tmp, target)
            del model
            gc.collect()
        return str(target)

    def generate(self, spec: ModelSpec, work: Path, prompts, sampling, seeds, stops, on_batch):
        from vllm import SamplingParams

        from codelora.generation.sampling import Generation
        from codelora.model.sources import model_path

        lora_request = None
        if spec.adapter and self.mode == "merge":
            llm = self._engine(self._merged(spec, work), False)
        else:
            llm = self._engine(model_path(spec.source), self.mode == "lora")
            if spec.adapter:
                from vllm.lora.request import LoRARequest

                lid = self.lora_ids.setdefault(spec.adapter, len(self.lora_ids) + 1)
                lora_request = LoRARequest(spec.name, lid, spec.adapter)
        chunk = 256  # save progress every chunk, as the HF backend does every batch
        results: list[Generation] = []
        for start in range(0, len(prompts), chunk):
            part = list(range(start, min(start + chunk, len(prompts))))
            params = [
                SamplingParams(
                    temperature=0.0 if sampling.greedy else sampling.temperature,
                    top_p=1.0 if sampling.greedy else sampling.top_p,
                    max_tokens=sampling.max_new_tokens,
                    seed=None if sampling.greedy else seeds[i],
                    stop_token_ids=stops,
                    skip_special_tokens=True,
                )
                for i in part
            ]
            outs = llm.generate(
                [{"prompt_token_ids": prompts[i]} for i in part], params, lora_request=lora_request, use_tqdm=True
            )
            done = []
            for i, o in zip(part, outs, strict=True):
                c = o.outputs[0]
                g = Generation(c.text, len(c.token_ids), c.finish_reason == "stop")
                results.append(g)
                done.append((i, g))
            on_batch(done)
        return results

    def fingerprint(self) -> None:
        """vLLM serves the model's own weights: its answers are keyed as the HF backend's (no extra fingerprint)."""
        return None

    def close(self) -> None:
        if self.engine is not None:
            self.engine = None
            self.engine_for = None
            gc.collect()
            try:
                import torch

                torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001 - best effort
                pass
