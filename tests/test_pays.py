"""Whether pruning from above paid (`compress.pays`): it must fit the budget and be more accurate, and says so."""

import pytest

from edgenas.compress.pays import pruned_from_above_pays


@pytest.mark.parametrize("at_ms, above_ms, at_acc, above_acc, pays, says", [
    (0.090, 0.099, 0.880, 0.885, True, "+0.50 points against"),  # fits, half a point more accurate
    (0.090, 0.099, 0.880, 0.880, False, "+0.00 points against"),  # fits, no more accurate: the simpler network ships
    (0.090, 0.080, 0.900, 0.890, False, "-1.00 points against"),  # faster, but less accurate: not what was asked
    (0.090, 0.101, 0.880, 0.950, False, "over the 0.1 ms budget"),  # more accurate, but over the budget
])
def test_pruning_from_above_must_fit_and_be_more_accurate(at_ms, above_ms, at_acc, above_acc, pays, says):
    v = pruned_from_above_pays(0.1, at_ms, above_ms, at_acc, above_acc, measured=True)
    assert v.pays is pays and says in v.why and "measured side by side" in v.why
    assert v.speedup == pytest.approx(at_ms / above_ms) and v.loss_points == pytest.approx((at_acc - above_acc) * 100)


def test_a_verdict_from_predictions_says_so():
    v = pruned_from_above_pays(0.1, 0.09, 0.095, 0.9, 0.91, measured=False)
    assert v.pays and not v.measured and "predicted (not measurable here)" in v.why
