"""Training objectives for the scorer."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def in_batch_softmax(
    queries: torch.Tensor,
    items: torch.Tensor,
    item_ids: torch.Tensor,
    scale: torch.Tensor,
    catalogue: torch.Tensor | None = None,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of each query against its own item, the batch's other items as negatives.

    An item that appears twice in a batch is not a negative for the other query that chose
    it: those logits are masked, so the loss never pushes a query away from a true positive.

    Args:
        queries: ``[B, D]`` normalised query embeddings.
        items: ``[B, D]`` normalised embeddings of each query's target item.
        item_ids: ``[B]`` integer ids of the target items (for duplicate masking).
        scale: 1 / temperature.
        catalogue: ``[N, D]`` cached embeddings of every catalogue item (no gradient), indexed
            by ``item_ids``: mixed negative sampling (Yang et al., 2020). Every catalogue item
            but the query's own target becomes a negative too, which is what a full ranking
            over the catalogue asks of the model.
        log_q: ``[N]`` log of each catalogue item's share of the training interactions: the
            sampling-bias correction of Yi et al. (2019). In-batch negatives are drawn in
            proportion to popularity, so without it the softmax learns to push popular items
            down; subtracting ``log q`` from every in-batch logit (the positive's included)
            makes the dot product estimate the user's preference itself.

    Returns:
        The mean loss (a scalar).
    """
    logits = scale * queries @ items.T
    same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
    eye = torch.eye(len(item_ids), dtype=torch.bool, device=logits.device)
    if log_q is not None:
        logits = logits - log_q.to(logits.device, logits.dtype)[item_ids].unsqueeze(0)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    if catalogue is not None:
        extra = scale * queries @ catalogue.to(queries.dtype).T
        own = F.one_hot(item_ids, num_classes=catalogue.shape[0]).bool()
        logits = torch.cat([logits, extra.masked_fill(own, float("-inf"))], dim=1)
    target = torch.arange(len(item_ids), device=logits.device)
    return F.cross_entropy(logits, target)
