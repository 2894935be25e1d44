"""Whether pruning paid (`compress.pays`): the thresholds, both ways, and what the verdict says."""

import pytest

from edgenas.compress.pays import MAX_LOSS_POINTS, MIN_SPEEDUP, pruning_pays


@pytest.mark.parametrize("before_ms, after_ms, before_acc, after_acc, pays, says", [
    (0.115, 0.100, 0.880, 0.880, True, "pruned: 1.15x"),  # exactly the speed-up asked, nothing lost
    (0.114, 0.100, 0.900, 0.910, False, "must give 1.15x"),  # more accurate, but not fast enough to be worth it
    (0.200, 0.100, 0.900, 0.896, False, "at most 0.3 may be lost"),  # twice as fast, 0.4 points lost
    (0.200, 0.100, 0.900, 0.897, True, "pruned: 2.00x"),  # 0.3 points lost: within the rule
])
def test_pruning_must_pay_in_speed_and_keep_its_accuracy(before_ms, after_ms, before_acc, after_acc, pays, says):
    v = pruning_pays(before_ms, after_ms, before_acc, after_acc, measured=True)
    assert v.pays is pays and says in v.why and "measured side by side" in v.why
    assert v.speedup == pytest.approx(before_ms / after_ms) and v.loss_points == pytest.approx((before_acc - after_acc) * 100)
    assert (v.speedup >= MIN_SPEEDUP and v.loss_points <= MAX_LOSS_POINTS) is pays


def test_a_verdict_from_predictions_says_so():
    v = pruning_pays(0.2, 0.1, 0.9, 0.9, measured=False)
    assert v.pays and not v.measured and "predicted (not measurable here)" in v.why
