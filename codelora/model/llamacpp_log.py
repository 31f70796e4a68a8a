"""llama.cpp's log, filtered (model/ loads GGUF vocabularies, generation/backends/llamacpp runs GGUF models: both
open llama.cpp through this one filter)."""

from __future__ import annotations

import sys

__all__ = ["quiet_logs"]

_LOG_CALLBACK = None  # kept referenced: llama.cpp calls it from C


def quiet_logs() -> None:
    """Route llama.cpp's log through a filter (once per process): its errors still reach stderr, except
    `n_ctx_seq (512) > n_ctx_train (0) -- possible training context overflow`, which llama.cpp logs at error level
    whenever a GGUF is opened for its vocabulary only (n_ctx_train is 0 when no weights are read): it means nothing
    about the user's model and was printed by every llamacpp evaluation. Anything below error level is dropped, as
    llama-cpp-python's own `verbose=False` does."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback
    def callback(level, text, user_data):
        msg = (text or b"").decode("utf-8", errors="replace")
        if level == 3 and not ("n_ctx_train (0)" in msg and "training context overflow" in msg):
            print(msg, end="", file=sys.stderr, flush=True)

    _LOG_CALLBACK = callback
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
