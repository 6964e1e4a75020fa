# CELL: Lu et al. 2024, "Discovering Preference Optimization Algorithms" (DiscoPOP), arXiv:2406.08414, App.
def combined_exp_logistic_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    pi_logratios = policy_chosen_logps - policy_rejected_logps  # (B,)
    ref_logratios = reference_chosen_logps - reference_rejected_logps  # (B,)
    logits = pi_logratios - ref_logratios  # (B,) ρ
    logits = self.beta * logits  # (B,) z = βρ
    # Equal mix of the exponential loss (sharper push on mis-ordered pairs) and the logistic loss.
    # exp(-z) overflows to inf for z ≲ -88 in float32: this loss is unbounded for very wrong pairs.
    exp_losses = torch.exp(-logits)  # (B,)
    log_losses = -F.logsigmoid(logits)  # (B,)
    losses = 0.5 * exp_losses + 0.5 * log_losses
    return losses  # (B,)
