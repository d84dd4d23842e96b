"""What a plan run shows: a line per step (plain, or a live spinner on a terminal), the final line,
and the `--output json` document. Rendering only; the results come from plan/execute.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

from netdebug.plan.execute import STATUS_WORDS, Attempt, NoEvents, PlanResult, StepResult
from netdebug.plan.model import Step


def result_json(result: PlanResult, sidecar_log: Mapping[str, object]) -> dict[str, object]:
    return {
        "plan": result.plan.source,
        "status": STATUS_WORDS[result.status],
        "exit_code": int(result.status),
        "started_at": result.started_at,
        "duration_s": round(result.duration_s, 3),
        "interrupted": result.interrupted,
        "vars": dict(result.plan.vars),
        "sidecar": dict(sidecar_log),
        "steps": [
            {
                "number": r.step.number,
                "name": r.step.name,
                "kind": r.step.kind,
                "status": r.word,
                "exit_code": None if r.skipped else int(r.status),
                "summary": r.summary,
                "converged": r.converged,
                "passes_in_a_row": r.passes_in_a_row,
                "until_passes": r.step.repeat.until_passes,
                "max_attempts": r.step.repeat.max_attempts,
                "duration_s": round(r.duration_s, 3),
                "attempts": [
                    {
                        "attempt": a.number,
                        "status": STATUS_WORDS[a.outcome.status],
                        "exit_code": int(a.outcome.status),
                        "summary": a.outcome.summary,
                        "failures": list(a.outcome.failures),
                        "started_s": round(a.started_s, 3),
                        "duration_s": round(a.duration_s, 3),
                        "details": dict(a.outcome.details),
                    }
                    for a in r.attempts
                ],
            }
            for r in result.steps
        ],
    }


def step_line(result: StepResult, total: int) -> str:
    return f"[{result.step.number}/{total}] {result.word.upper():<12} {result.step.name}: {result.summary}"


class PlainEvents(NoEvents):
    """Plain text, one line per finished attempt of a repeated step and per finished step."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def attempt_finished(self, step: Step, attempt: Attempt) -> None:
        if step.repeat.max_attempts > 1:
            word = STATUS_WORDS[attempt.outcome.status]
            of = f"{attempt.number}/{step.repeat.max_attempts}"
            self.out.write(f"      attempt {of} {word}: {attempt.outcome.summary}\n")
            self.out.flush()

    def step_finished(self, result: StepResult, total: int) -> None:
        self.out.write(step_line(result, total) + "\n")
        self.out.flush()


class LiveEvents(PlainEvents):
    """On a terminal: a spinner line for the running step (with the prober's progress) above which
    finished attempts and steps are printed."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        from rich.console import Console

        self.console = Console(file=out, highlight=False)
        self.status = self.console.status("starting")
        self.current = ""

    def __enter__(self) -> LiveEvents:
        self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.stop()

    def step_started(self, step: Step, total: int) -> None:
        self.current = f"[{step.number}/{total}] {step.name}"
        self.status.update(self.current)

    def attempt_started(self, step: Step, number: int) -> None:
        if step.repeat.max_attempts > 1:
            self.status.update(f"{self.current} (attempt {number}/{step.repeat.max_attempts})")

    def progress(self, step: Step, text: str) -> None:
        if text:
            self.status.update(f"{self.current}: {text}")

    def attempt_finished(self, step: Step, attempt: Attempt) -> None:
        if step.repeat.max_attempts > 1:
            word = STATUS_WORDS[attempt.outcome.status]
            self.console.print(
                f"      attempt {attempt.number} {word}: {attempt.outcome.summary}", markup=False
            )

    def step_finished(self, result: StepResult, total: int) -> None:
        from rich.text import Text

        style = {"pass": "green", "inconclusive": "yellow", "fail": "red"}.get(result.word, "bold red")
        rest = f" [{result.step.number}/{total}] {result.step.name}: {result.summary}"
        self.console.print(Text.assemble((f"{result.word.upper():<12}", style), rest))


def final_line(result: PlanResult) -> str:
    counts: dict[str, int] = {}
    for r in result.steps:
        counts[r.word] = counts.get(r.word, 0) + 1
    parts = ", ".join(f"{n} {word}" for word, n in counts.items())
    return (
        f"plan {result.plan.source}: {STATUS_WORDS[result.status]} "
        f"({parts}) in {result.duration_s:.1f}s, exit {int(result.status)}"
    )
