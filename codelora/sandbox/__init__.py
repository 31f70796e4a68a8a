"""Sandboxed execution of untrusted programs and grading of their outputs."""

from codelora.sandbox.execution import (
    ExecResult,
    compile_in_sandbox,
    isolation,
    isolation_description,
    isolation_report,
    run_program,
)
from codelora.sandbox.grading import GradeResult, grade_stdio_problem, outputs_match

__all__ = [
    "ExecResult",
    "compile_in_sandbox",
    "GradeResult",
    "grade_stdio_problem",
    "isolation",
    "isolation_description",
    "isolation_report",
    "outputs_match",
    "run_program",
]
