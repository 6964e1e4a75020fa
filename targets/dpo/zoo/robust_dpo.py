# Robust DPO: Chowdhury et al. 2024, "Provably Robust DPO", arXiv:2403.00409.
def robust_dpo_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    # Assumed label-flip rate ε, fixed here (TRL's loss_type="robust" reads it from label_smoothing).
    eps = 0.1
    pi_logratios = policy_chosen_logps - policy_rejected_logps  # (B,)
    ref_logratios = reference_chosen_logps - reference_rejected_logps  # (B,)
    logits = pi_logratios - ref_logratios  # (B,) ρ
    logits = self.beta * logits  # (B,) βρ
    # Unbiased estimate of the clean-label loss under flip rate ε (their Eqn (8)): it subtracts the
    # flipped-label term and rescales by 1/(1 - 2ε), so it is unbounded below as βρ → +∞.
    losses = (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)
    return losses  # (B,)
