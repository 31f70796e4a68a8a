"""User-facing errors: one clear line on stderr and a non-zero exit, never a traceback."""


class UserError(Exception):
    """A mistake in the user's input (file, config, model name). The CLI prints `error: <msg>` and exits 2."""


class TrainingError(UserError):
    """Training cannot go on (e.g. the loss became NaN, the disk filled up); one line, exit 2 like UserError."""
