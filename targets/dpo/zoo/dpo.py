# DPO, sigmoid loss: Rafailov et al. 2023, "Direct Preference Optimization", arXiv:2305.18290, Eqn (7).
def dpo_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    # ρ: how much more the policy prefers chosen over rejected than the reference does.  # (B,)
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = self.beta * (pi_logratios - ref_logratios)  # (B,) βρ, the implicit reward margin
    # Label smoothing ε (cDPO) assumes each label is flipped with probability ε; ε = 0 is plain DPO.
    eps = self.label_smoothing
    losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    return losses  # (B,)
