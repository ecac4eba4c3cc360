"""Model cascades: answer with the cheapest member that passes its self-test, else escalate.

    from snmfm.cascade import Cascade, model_member
    casc = Cascade.for_task(task, [model_member("tiny", q_tiny), model_member("medium", q_medium)],
                            self_test="max_prob")
    casc.calibrate(task.batches("calib", 256), tolerance=0.005, method="ltt", delta=0.1)
    r = casc.run(*batch)          # r.predictions, r.log (which member ran on which queries)

The cascade never touches hardware: members carry a `placement` label, and `eval.cascade`
charges the call log through the same simulate functions as everything else.
"""
from snmfm.cascade.core import GRID, NEVER, CalibrationError, Calibration, Cascade, CascadeResult, Stage
from snmfm.cascade.log import CallLog, MemberCall, SelfTestCall
from snmfm.cascade.members import (FORMS, PLACEMENTS, CascadeError, Member, MemberRecord, Readout,
                                   Records, check_members, model_member, readout_for, record_members)
from snmfm.cascade.risk import METHODS, binom_ucb, min_queries
from snmfm.cascade.selftests import SELF_TESTS, Probe, confidence, self_test_ops

__all__ = ["CalibrationError", "Calibration", "CallLog", "Cascade", "CascadeError", "CascadeResult",
           "FORMS", "GRID", "METHODS", "Member", "MemberCall", "MemberRecord", "NEVER", "PLACEMENTS",
           "Probe", "Readout", "Records", "SELF_TESTS", "SelfTestCall", "Stage", "binom_ucb",
           "check_members", "confidence", "min_queries", "model_member", "readout_for",
           "record_members", "self_test_ops"]
