# DBAQL: Lu et al. 2024, "Discovering Preference Optimization Algorithms" (DiscoPOP), arXiv:2406.08414, App.
def dynamic_blended_adaptive_quantile_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    pi_logratios = policy_chosen_logps - policy_rejected_logps  # (B,)
    ref_logratios = reference_chosen_logps - reference_rejected_logps  # (B,)
    logits = pi_logratios - ref_logratios  # (B,) ρ
    logits = self.beta * logits  # (B,) z = βρ
    # Blend set by the batch variance of the scaled margins: batch-dependent, NaN for a batch of one.
    # Once the variance is large the blend saturates at 1 and this is a tempered DPO loss.
    blend = torch.sigmoid((logits / 0.05).var())  # ()
    logistic_component = -F.logsigmoid(logits / 0.9)  # (B,)
    # exp(-0.9 z) overflows to inf for z ≲ -98 in float32 (and (1 - blend) · inf is NaN when blend = 1).
    exp_component = torch.exp(-logits * 0.9)  # (B,)
    losses = blend * logistic_component + (1 - blend) * exp_component
    return losses  # (B,)
