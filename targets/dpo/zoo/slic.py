# SLiC hinge loss: Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback".
def slic_hinge_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    pi_logratios = policy_chosen_logps - policy_rejected_logps  # (B,)
    ref_logratios = reference_chosen_logps - reference_rejected_logps  # (B,)
    logits = pi_logratios - ref_logratios  # (B,) ρ
    # Hinge on the β-scaled margin (TRL's "hinge"): no gradient once βρ ≥ 1, so pairs stop moving once
    # they are separated by the unit margin.
    losses = torch.relu(1 - self.beta * logits)
    return losses  # (B,)
