# KTO, paired form (old TRL "kto_pair"): Ethayarajh et al. 2024, "KTO", arXiv:2402.01306.
def kto_pair_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    # Batch-level estimates of KL(π‖π_ref), clamped at 0 and used as the reference point of the value
    # function. They are means over the batch, so this loss is batch-dependent by design.  # ()
    chosen_kl = (policy_chosen_logps - reference_chosen_logps).mean().clamp(min=0)
    rejected_kl = (policy_rejected_logps - reference_rejected_logps).mean().clamp(min=0)
    chosen_logratios = policy_chosen_logps - reference_chosen_logps  # (B,)
    rejected_logratios = policy_rejected_logps - reference_rejected_logps  # (B,)
    # As in the KTO report, each half's reference point is estimated from the other half.
    chosen_losses = 1 - torch.sigmoid(self.beta * (chosen_logratios - rejected_kl))  # (B,)
    rejected_losses = 1 - torch.sigmoid(self.beta * (chosen_kl - rejected_logratios))  # (B,)
    # TRL concatenated the halves into (2B,); summing them keeps one loss per pair, shape (B,), and
    # doubles TRL's batch mean (same direction, twice the scale).
    return chosen_losses + rejected_losses  # (B,)
