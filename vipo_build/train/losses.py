"""Diffusion-DPO and Poly-DPO losses, for trainers that read vipo-build's exports.

Inputs are per-pair denoising errors (the mean squared error of the predicted noise, or velocity,
per sample) of the model being trained and of its frozen reference, on the chosen ("w", winner)
and rejected ("l", loser) images, noised with the same noise at the same timestep.

Diffusion-DPO (Wallace et al. 2023, "Diffusion Model Alignment Using Direct Preference
Optimization"), as the diffusers example `train_diffusion_dpo.py` computes it:

    z = -beta / 2 * ((err_w - err_l) - (ref_err_w - ref_err_l)),    L = -log sigmoid(z)

Poly-DPO: the ViPO paper describes it as DPO plus a polynomial term in the model's confidence
sigmoid(z) with one coefficient alpha, where alpha = 0 is DPO, alpha > 0 slows the decay of the
gradient as the confidence rises and alpha < 0 speeds it up. The form here is derived from that
description and PolyLoss's Poly-1 (Leng et al. 2022, "PolyLoss: A Polynomial Expansion
Perspective of Classification Loss Functions"), with the DPO logit in place of the class logit:

    L = -log sigmoid(z) + alpha * (1 - sigmoid(z))

Its gradient is dL/dz = -(1 - sigmoid(z)) * (1 + alpha * sigmoid(z)): DPO's, times a factor that
grows with the confidence when alpha > 0 and shrinks with it when alpha < 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_logit(err_w: torch.Tensor, err_l: torch.Tensor, ref_err_w: torch.Tensor, ref_err_l: torch.Tensor,
              beta: float) -> torch.Tensor:
    """z per pair: how much more the model prefers the chosen image than its reference does."""
    return -0.5 * beta * ((err_w - err_l) - (ref_err_w - ref_err_l))


def implicit_accuracy(z: torch.Tensor) -> torch.Tensor:
    """Share of pairs whose implicit reward ranks the chosen image first (z > 0)."""
    return (z > 0).float().mean()


def diffusion_dpo_loss(err_w: torch.Tensor, err_l: torch.Tensor, ref_err_w: torch.Tensor, ref_err_l: torch.Tensor,
                       beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, implicit accuracy) of Diffusion-DPO."""
    z = dpo_logit(err_w, err_l, ref_err_w, ref_err_l, beta)
    return -F.logsigmoid(z).mean(), implicit_accuracy(z)


def poly_dpo_loss(err_w: torch.Tensor, err_l: torch.Tensor, ref_err_w: torch.Tensor, ref_err_l: torch.Tensor,
                  beta: float, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, implicit accuracy) of Poly-DPO; alpha = 0 gives Diffusion-DPO exactly."""
    z = dpo_logit(err_w, err_l, ref_err_w, ref_err_l, beta)
    return (-F.logsigmoid(z) + alpha * (1 - torch.sigmoid(z))).mean(), implicit_accuracy(z)
