"""EvaluationGate: approve this run's model package, or reject it and stop before hosting.

Both scores come from the training job, which evaluated the candidate and the live model (given
to it as its "baseline" input) on the same test split, in the same container. The candidate is
approved if its accuracy is at least the live model's plus ``gate.min_improvement`` and at
least ``gate.min_accuracy`` (unset: no floor); the first model needs only the floor. A rejected
candidate ends the execution as ModelRejected, with both scores in the cause.
"""

from __future__ import annotations

import json

from handlers import registry as R
from handlers.common import logger, state_handler, with_section
from handlers.errors import ModelRejected


def decide(accuracy: float, live: float | None, min_improvement: float,
           min_accuracy: float | None) -> tuple[bool, str]:
    if min_accuracy is not None and accuracy < min_accuracy:
        return False, f"test accuracy {accuracy:.4f} is below gate.min_accuracy {min_accuracy:.4f}"
    if live is None:
        return True, f"first model: test accuracy {accuracy:.4f}" + (
            f" ≥ gate.min_accuracy {min_accuracy:.4f}" if min_accuracy is not None else "")
    needed = live + min_improvement
    if accuracy + 1e-9 < needed:
        return False, (f"test accuracy {accuracy:.4f} < live model's {live:.4f} + gate.min_improvement "
                       f"{min_improvement:+.4f} on the same test split")
    return True, (f"test accuracy {accuracy:.4f} ≥ live model's {live:.4f} + gate.min_improvement "
                  f"{min_improvement:+.4f} on the same test split")


@state_handler
def handler(doc: dict) -> dict:
    package, gate = doc["model_package"], doc["gate"]
    live = package.get("live_accuracy")
    if doc.get("baseline", {}).get("model_data") and live is None:
        # A live model exists but could not be scored: never replace it blind.
        approved, reason = False, f"the live model could not be evaluated: {package.get('live_error')}"
    else:
        approved, reason = decide(package["accuracy"], live, float(gate["min_improvement"]),
                                  gate.get("min_accuracy"))
    status = "Approved" if approved else "Rejected"
    R.update_metadata(package["arn"], {R.DECISION: status, R.REASON: reason},
                      ModelApprovalStatus=status, ApprovalDescription=reason[:1024])
    decision = {"decision": status, "reason": reason, "candidate_accuracy": package["accuracy"],
                "live_accuracy": live, "min_improvement": gate["min_improvement"],
                "min_accuracy": gate.get("min_accuracy")}
    logger.info("evaluation gate", **decision)
    if not approved:
        raise ModelRejected(json.dumps(decision))
    return with_section(doc, "gate_decision", decision)
