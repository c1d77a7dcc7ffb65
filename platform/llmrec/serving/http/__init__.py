"""The HTTP edge of serving: validation and error shape at the ingress (``edge``), the proxy's
middlewares (``proxy``), retries and timeouts (``resilience``), the review page (``pages``,
``ui/``). Imports api and serving.
"""

__all__: list[str] = []
