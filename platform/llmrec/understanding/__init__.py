"""Reading requests and explaining answers: the query, its intent, phrases, constraints and
lexicon, and the explanation of a ranked item. Imports config, data, api, modeling, ranking.
"""

from llmrec.understanding.query import Intent, Query, RequestError

__all__ = ["Intent", "Query", "RequestError"]
