"""What a DPO-loss candidate may import; the rules themselves live in `sandbox.policy`.

`typing` is allowed because the DiscoPOP paper's appendix code annotates with `torch.FloatTensor` and
some published variants import from typing. torch's file, process and network surfaces (torch.load,
torch.hub, ...) stay forbidden by the sandbox policy's attribute rules even though `torch` is allowed.
"""

from __future__ import annotations

LOSS_ALLOWED_IMPORTS: frozenset[str] = frozenset({"torch", "math", "typing"})
