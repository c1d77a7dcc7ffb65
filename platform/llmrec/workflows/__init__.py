"""What the jobs run end to end: fine-tune, update, the incremental protocol, and their shared
steps (lineage, held-out checks, the promotion gate). The top layer: may import any other.
"""

__all__: list[str] = []
