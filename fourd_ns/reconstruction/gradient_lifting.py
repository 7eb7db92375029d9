"""G3R's gradient lifting: the gradient of the source views' photometric loss with respect to every channel of the
3D neural Gaussians, the signal the learned optimizer refines the scene from.

``L = Σ_v MSE(render(decode(S); Π_v), I_v)`` over the source views. The gradient is taken view by view and summed
(each view's rendering graph is freed after its own backward), so memory does not grow with the number of views and
the result does not depend on their order (up to floating-point summation order). It is taken with respect to the
state tensors only, as stop-gradient inputs for the network (no second-order terms: the paper is silent, and
both public reimplementations we read do the same); the decoder's parameters receive no gradient from lifting.

`normalise_gradient` divides each channel by its maximum absolute value over the Gaussians of one part (the paper's
per-channel max-abs normalisation), so the network sees inputs in [-1, 1] whatever the scene's scale or view count.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

ViewLoss = Callable[[Dict[str, Tensor], int], Tensor]
"""(states with gradients enabled, view index) -> that view's scalar loss."""


def lift_gradients(
    states: Dict[str, Float[Tensor, "N C"]], view_loss: ViewLoss, view_indices: Sequence[int]
) -> Tuple[Dict[str, Float[Tensor, "N C"]], float]:
    """∂(Σ_v view_loss(S, v))/∂S for every state tensor, and the summed loss; accumulated one view at a time.

    Parts that a view does not see (an actor absent at its time) get zeros from that view.
    """
    leaves = {name: state.detach().requires_grad_(True) for name, state in states.items()}
    grads = {name: torch.zeros_like(state) for name, state in leaves.items()}
    names = list(leaves)
    total = 0.0
    with torch.enable_grad():
        for index in view_indices:
            loss = view_loss(leaves, index)
            total += float(loss.detach())
            if not loss.requires_grad:  # nothing of the scene in this view: it counts in the loss, not the gradient
                continue
            parts = torch.autograd.grad(loss, [leaves[n] for n in names], allow_unused=True)
            for name, grad in zip(names, parts):
                if grad is not None:
                    grads[name] += grad
    return grads, total


def normalise_gradient(grad: Float[Tensor, "N C"], eps: float = 1e-12) -> Float[Tensor, "N C"]:
    """Each channel divided by its maximum absolute value over the N Gaussians (zero channels stay zero)."""
    if grad.shape[0] == 0:
        return grad
    scale = grad.abs().amax(dim=0, keepdim=True).clamp_min(eps)
    return grad / scale
