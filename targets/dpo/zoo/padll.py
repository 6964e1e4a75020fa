# PADLL: Lu et al. 2024, "Discovering Preference Optimization Algorithms" (DiscoPOP), arXiv:2406.08414, App.
def performance_adaptive_decay_logistic_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    base_decay = 0.9
    mismatch_penalty = 0.5  # how much to shrink the loss on pairs the policy currently gets wrong
    pi_logratios = policy_chosen_logps - policy_rejected_logps  # (B,)
    ref_logratios = reference_chosen_logps - reference_rejected_logps  # (B,)
    logits = pi_logratios - ref_logratios  # (B,) ρ
    mismatch = (logits < 0).float()  # (B,) 1 where ρ < 0, a non-differentiable switch
    # Down-weighting mis-ordered pairs makes the loss less sensitive to (possibly noisy) hard labels.
    adaptive_decay = base_decay * (1 - mismatch_penalty * mismatch)  # (B,) 0.9 or 0.45
    losses = adaptive_decay * -F.logsigmoid(self.beta * logits)
    return losses  # (B,)
