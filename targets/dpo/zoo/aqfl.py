# AQFL: Lu et al. 2024, "Discovering Preference Optimization Algorithms" (DiscoPOP), arXiv:2406.08414, App.
def adaptive_quantile_feedback_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    pi_logratios = policy_chosen_logps - policy_rejected_logps  # (B,)
    ref_logratios = reference_chosen_logps - reference_rejected_logps  # (B,)
    logits = pi_logratios - ref_logratios  # (B,) ρ
    logits = self.beta * logits  # (B,) z = βρ
    scaled = logits / 0.05  # (B,)
    # A batch statistic used as a soft "quantile" of the margins; batch-dependent by design, and NaN
    # for a batch of one (the unbiased std of a single element is undefined).
    logits_std = scaled.std()  # ()
    quantile = logits_std * torch.sigmoid(-scaled).mean()  # ()
    quantile = quantile + 0.05 * (torch.sigmoid(scaled.mean()) - quantile)  # () feedback step
    # Blend towards the logistic loss for margins far from the batch quantile, hinge near it.
    blend = torch.sigmoid(0.1 * (scaled - quantile).abs())  # (B,)
    losses = blend * -F.logsigmoid(logits) + (1 - blend) * torch.relu(1 - logits)
    return losses  # (B,)
