# LRML (DiscoPOP): Lu et al. 2024, "Discovering Preference Optimization Algorithms", arXiv:2406.08414.
def log_ratio_modulated_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    tau = 0.05  # temperature of the mixing sigmoid (the paper's best setting)
    pi_logratios = policy_chosen_logps - policy_rejected_logps  # (B,)
    ref_logratios = reference_chosen_logps - reference_rejected_logps  # (B,)
    logits = pi_logratios - ref_logratios  # (B,) ρ
    logits = self.beta * logits  # (B,) z = βρ
    # Mixing weight: logistic (DPO) loss for z < 0, exponential loss for z > 0, switching sharply at 0.
    modulation = torch.sigmoid(logits / tau)  # (B,)
    logistic_component = F.softplus(-logits)  # (B,) = -log σ(z), stable for any z
    # The published form multiplies exp(-z) by σ(z/τ): for z ≲ -88 in float32, exp(-z) = inf and
    # σ(z/τ) = 0, so inf · 0 = NaN in the loss and its gradient. The same product in log space,
    # exp(-z + log σ(z/τ)), stays finite: for very negative z the exponent → -∞ and the term → 0.
    exp_component = torch.exp(-logits + F.logsigmoid(logits / tau))  # (B,) = σ(z/τ) · exp(-z)
    losses = (1 - modulation) * logistic_component + exp_component
    return losses  # (B,)
