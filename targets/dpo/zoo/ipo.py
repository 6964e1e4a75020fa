# IPO: Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences".
def ipo_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    # NOTE: disco's candidates see log-probs SUMMED over the completion. TRL's loss_type="ipo" averages
    # them over the completion length first, so its ρ is about 1/length of this one; at the same β
    # this loss therefore pulls ρ towards the same target 1/(2β) on a much larger scale of ρ.
    pi_logratios = policy_chosen_logps - policy_rejected_logps  # (B,)
    ref_logratios = reference_chosen_logps - reference_rejected_logps  # (B,)
    logits = pi_logratios - ref_logratios  # (B,) ρ
    # Squared regression of ρ onto 1/(2β): bounded preference strength instead of DPO's push to +∞.
    losses = (logits - 1 / (2 * self.beta)) ** 2
    return losses  # (B,)
