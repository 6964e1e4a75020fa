"""The DiscoPOP paper's discovered losses in the style of its appendix (Lu et al. 2024, arXiv:2406.08414).

Written for these tests from the paper's formulas, in the form its appendix prints them: a method-style
function with `torch.FloatTensor` annotations, comments, `import torch.nn.functional as F` inside some
bodies, augmented assignment, batch statistics, a bare expression statement, `from typing import ...`.
Not numerically hardened (LRML's σ(z/τ)·exp(-z) is inf·0 for very negative z, as published): the static
policy must accept them unchanged, whatever the numeric checks then say.
"""

from __future__ import annotations

_SIGNATURE = """\
def {name}(
    self,
    policy_chosen_logps: torch.FloatTensor,
    policy_rejected_logps: torch.FloatTensor,
    reference_chosen_logps: torch.FloatTensor,
    reference_rejected_logps: torch.FloatTensor,
) -> torch.FloatTensor:
"""

_BODIES = {
    "log_ratio_modulated_loss": """\
    tau = 0.05
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = (pi_logratios - ref_logratios) * self.beta
    # sigmoid of the scaled margin picks between the two components
    modulation = torch.sigmoid(logits / tau)
    logistic_part = -F.logsigmoid(logits)
    exp_part = torch.exp(-logits)
    losses = logistic_part * (1 - modulation) + exp_part * modulation
    return losses
""",
    "performance_adaptive_decay_logistic_loss": """\
    base_decay = 0.9
    mismatch_penalty = 0.5  # shrink the loss on pairs ranked the wrong way
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = pi_logratios - ref_logratios
    wrong_way = (logits < 0).float()
    decay = base_decay * (1 - wrong_way * mismatch_penalty)
    return decay * -F.logsigmoid(self.beta * logits)
""",
    "adaptive_quantile_feedback_loss": """\
    import torch.nn.functional as F

    update_rate = 0.05
    distance_scale = 0.1
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = (pi_logratios - ref_logratios) * self.beta
    spread = (logits / 0.05).std()
    quantile = spread * torch.sigmoid(-logits / 0.05).mean()
    quantile += update_rate * (torch.sigmoid((logits / 0.05).mean()) - quantile)
    distance = (logits / 0.05 - quantile).abs()
    blend = torch.sigmoid(distance_scale * distance)
    logistic_losses = -F.logsigmoid(logits)
    hinge_losses = torch.relu(1 - logits)
    return blend * logistic_losses + (1 - blend) * hinge_losses
""",
    "adaptive_quantile_loss": """\
    start = 0.5
    weight = 0.01
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = (pi_logratios - ref_logratios) * self.beta
    moving = start + weight * (torch.sigmoid((logits / 0.05).mean()) - start)
    quantile_weights = torch.sigmoid(-(logits / 0.05 - moving))
    logistic_losses = -F.logsigmoid(logits)
    hinge_losses = torch.relu(1 - logits)
    losses = quantile_weights * logistic_losses + (1 - quantile_weights) * hinge_losses
    return losses
""",
    "dynamic_blended_adaptive_quantile_loss": """\
    import torch.nn.functional as F

    temperature = 0.9
    blend_rate = 1.0
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = (pi_logratios - ref_logratios) * self.beta
    variability = (logits / 0.05).var()
    0.5 + 0.01 * (torch.sigmoid(logits.mean()) - 0.5)  # an unused moving quantile, left as printed
    coefficient = torch.sigmoid(variability) * blend_rate
    logistic_loss = -F.logsigmoid(logits / temperature)
    exp_loss = torch.exp(-logits * temperature)
    return coefficient * logistic_loss + (1 - coefficient) * exp_loss
""",
    "combined_exp_logistic_loss": """\
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = pi_logratios - ref_logratios
    exp_losses = torch.exp(-self.beta * logits)
    log_losses = -F.logsigmoid(self.beta * logits)
    alpha = 0.5  # mixing coefficient
    return alpha * exp_losses + (1 - alpha) * log_losses
""",
    "policy_focused_loss": """\
    focus_scale = 2.0
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = (pi_logratios - ref_logratios) * self.beta
    is_correct = policy_chosen_logps > policy_rejected_logps
    logistic_losses = -F.logsigmoid(logits)
    hinge_losses = torch.relu(1 - logits)
    return torch.where(
        is_correct,
        logistic_losses / focus_scale,  # correct pairs: softer
        hinge_losses * focus_scale,  # wrong pairs: harder
    )
""",
    "sigmoid_loss_with_smoothing": """\
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = pi_logratios - ref_logratios
    losses = (
        -F.logsigmoid(self.beta * logits) * (1 - self.label_smoothing)
        - F.logsigmoid(-self.beta * logits) * self.label_smoothing
    )
    return losses
""",
    "kto_pair_with_detached_reference_points": """\
    chosen_kl = (policy_chosen_logps - reference_chosen_logps).mean().clamp(min=0).detach()
    rejected_kl = (policy_rejected_logps - reference_rejected_logps).mean().clamp(min=0).detach()
    chosen_logratios = policy_chosen_logps - reference_chosen_logps
    rejected_logratios = policy_rejected_logps - reference_rejected_logps
    chosen = 1 - F.sigmoid(self.beta * (chosen_logratios - rejected_kl))
    rejected = 1 - F.sigmoid(self.beta * (chosen_kl - rejected_logratios))
    return torch.stack((chosen, rejected), 0).sum(0)
""",
}

APPENDIX_LOSSES: dict[str, str] = {
    name: _SIGNATURE.format(name=name) + body for name, body in _BODIES.items()
}
"""name -> candidate source, exactly as a model that copied the appendix would submit it."""

APPENDIX_LOSSES["with_typing_import"] = (
    "from typing import Optional, Tuple\n\n\n"
    + _SIGNATURE.format(name="with_typing_import")
    + (
        "    margin: Optional[float] = None\n"
        "    pair: Tuple[torch.FloatTensor, ...] = (policy_chosen_logps, policy_rejected_logps)\n"
        "    logits = (pair[0] - pair[1]) - (reference_chosen_logps - reference_rejected_logps)\n"
        "    return -F.logsigmoid(self.beta * logits)\n"
    )
)
