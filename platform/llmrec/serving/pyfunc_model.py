"""The MLflow pyfunc model of a registered llmrec version (models-from-code form, no pickle).

``mlflow.pyfunc.load_model("models:/llmrec-scorer@champion").predict(df)`` takes a DataFrame
with any of the columns ``user_id``, ``history`` (list of item ids), ``query`` and ``k`` and
returns one row per request with ``items`` (ids) and ``scores``, the same answer as the HTTP
API, without Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from llmrec.api.schemas import RecommendRequest
from llmrec.registry.bundle import ModelBundle
from llmrec.serving.recommender import CandidateRanker, QueryBuilder, QueryEncoder


class LLMRecModel(PythonModel):
    """Query builder + encoder + ranker over one bundle."""

    def load_context(self, context: PythonModelContext) -> None:
        bundle = ModelBundle(Path(context.artifacts["bundle"]))
        self.encoder = QueryEncoder(bundle)
        self.builder = QueryBuilder(bundle, parser=self.encoder.parser())  # as served
        self.ranker = CandidateRanker(bundle)

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        rows = []
        for record in model_input.to_dict(orient="records"):
            clean = {
                k: v
                for k, v in record.items()
                if v is not None and not (isinstance(v, float) and pd.isna(v))
            }
            if "history" in clean:
                clean["history"] = list(clean["history"])
            req = RecommendRequest.model_validate(clean, strict=False)
            query = self.builder.build(req)
            items = self.ranker.rank(self.encoder.encode([query]), query)
            rows.append({"items": [i.item_id for i in items], "scores": [i.score for i in items]})
        return pd.DataFrame(rows)


mlflow.models.set_model(LLMRecModel())
