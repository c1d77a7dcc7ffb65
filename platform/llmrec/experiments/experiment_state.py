"""What the impression log keeps of experiments: each one's bucket allocation and the
running experiment (:class:`ExperimentState`), shared by the ingress replicas through the
log's file."""

from __future__ import annotations

import time

from llmrec.api.experiment import ExperimentSpec
from llmrec.experiments.assignment import Allocation, allocate
from llmrec.experiments.logfile import LogFile


class ExperimentRecords(LogFile):
    """The experiments' allocations and the running experiment, in the log's file."""

    def allocation(self, spec: ExperimentSpec) -> Allocation:
        """The experiment's buckets for its current weights: the stored allocation, moved as
        little as possible when the weights changed (stored for every replica)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT allocation FROM allocations WHERE experiment = ?", (spec.name,)
            ).fetchone()
            previous = Allocation.from_json(row[0]) if row else None
            if previous is not None and previous.weights == spec.weights():
                conn.execute("COMMIT")
                return previous
            new = allocate(spec.weights(), previous)
            conn.execute(
                "INSERT OR REPLACE INTO allocations (experiment, allocation) VALUES (?, ?)",
                (spec.name, new.to_json()),
            )
            conn.execute("COMMIT")
            return new
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def variants(self, experiment: str) -> list[str]:
        """The experiment's variants in its spec's order (the control first), as last run."""
        row = (
            self._conn()
            .execute("SELECT allocation FROM allocations WHERE experiment = ?", (experiment,))
            .fetchone()
        )
        return [name for name, _ in Allocation.from_json(row[0]).weights] if row else []

    @property
    def experiments(self) -> ExperimentState:
        return ExperimentState(self)


class ExperimentState:
    """The running experiment, shared by the ingress replicas through the log's file.

    The latest decision wins: a new experiment in the serve config (``args`` or
    ``user_config``) replaces what runs; ``PUT``/``DELETE /admin/experiment`` replace it
    too, and outlive a restart with an unchanged config.
    """

    def __init__(self, log: LogFile) -> None:
        self.log = log

    def _row(self) -> tuple[str | None, str | None]:
        row = (
            self.log._conn()
            .execute("SELECT current, configured FROM experiment_state WHERE id = 1")
            .fetchone()
        )
        return (row[0], row[1]) if row else (None, None)

    def current(self) -> ExperimentSpec | None:
        current, _ = self._row()
        return ExperimentSpec.model_validate_json(current) if current else None

    def configured(self, spec: ExperimentSpec | None) -> ExperimentSpec | None:
        """The serve config asks for ``spec``: it runs if the config changed since it was
        last seen; otherwise whatever was set since (by the API) keeps running."""
        text = spec.model_dump_json() if spec else None
        current, configured = self._row()
        if configured != text:
            self._set(text, text)
            return spec
        return ExperimentSpec.model_validate_json(current) if current else None

    def set(self, spec: ExperimentSpec | None) -> None:
        """Run ``spec`` (None: no experiment) from now on (the admin API)."""
        _, configured = self._row()
        self._set(spec.model_dump_json() if spec else None, configured)

    def _set(self, current: str | None, configured: str | None) -> None:
        self.log._write(
            "INSERT OR REPLACE INTO experiment_state (id, current, configured, updated) "
            "VALUES (1, ?, ?, ?)",
            [(current, configured, time.time())],
            full=True,
        )


__all__ = ["ExperimentRecords", "ExperimentState"]
