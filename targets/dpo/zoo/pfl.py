# PFL: Lu et al. 2024, "Discovering Preference Optimization Algorithms" (DiscoPOP), arXiv:2406.08414, App.
def policy_focused_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    pi_logratios = policy_chosen_logps - policy_rejected_logps  # (B,)
    ref_logratios = reference_chosen_logps - reference_rejected_logps  # (B,)
    logits = pi_logratios - ref_logratios  # (B,) ρ
    logits = self.beta * logits  # (B,) z = βρ
    # "Correct" is judged by the policy alone (chosen more likely than rejected), not by ρ.
    policy_correct = policy_chosen_logps > policy_rejected_logps  # (B,) bool
    # Halve the logistic loss where the policy is already right; double a hinge where it is wrong.
    losses = torch.where(policy_correct, -F.logsigmoid(logits) / 2, torch.relu(1 - logits) * 2)
    return losses  # (B,)
