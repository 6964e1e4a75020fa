# Conservative DPO (cDPO): Mitchell 2023, "A note on DPO with noisy preferences and relationship to IPO".
def conservative_dpo_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    # Each preference label is trusted with probability 1 - ε; ε is fixed here, not read from self.
    eps = 0.1
    pi_logratios = policy_chosen_logps - policy_rejected_logps  # (B,)
    ref_logratios = reference_chosen_logps - reference_rejected_logps  # (B,)
    logits = pi_logratios - ref_logratios  # (B,) ρ
    logits = self.beta * logits  # (B,) βρ
    # Expected DPO loss under label noise: the flipped label pulls βρ back towards log((1-ε)/ε), not +∞.
    losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    return losses  # (B,)
