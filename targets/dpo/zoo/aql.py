# AQL: Lu et al. 2024, "Discovering Preference Optimization Algorithms" (DiscoPOP), arXiv:2406.08414, App.
def adaptive_quantile_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    pi_logratios = policy_chosen_logps - policy_rejected_logps  # (B,)
    ref_logratios = reference_chosen_logps - reference_rejected_logps  # (B,)
    logits = pi_logratios - ref_logratios  # (B,) ρ
    logits = self.beta * logits  # (B,) z = βρ
    scaled = logits / 0.05  # (B,)
    # Threshold near 0.5 nudged by the batch mean: batch-dependent, though only slightly.
    moving_quantile = 0.5 + 0.01 * (torch.sigmoid(scaled.mean()) - 0.5)  # ()
    # Pairs below the threshold get the logistic loss, pairs above it the hinge (which stops at z = 1).
    weight = torch.sigmoid(-(scaled - moving_quantile))  # (B,)
    losses = weight * -F.logsigmoid(logits) + (1 - weight) * torch.relu(1 - logits)
    return losses  # (B,)
