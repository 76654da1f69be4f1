"""The outcomes are metric label values: dashboards and alerts match these exact strings."""

from teckochecker.engine.outcomes import Outcome


def test_outcome_labels_are_the_documented_strings() -> None:
    # prometheus_client turns label values into strings with str().
    assert {str(outcome) for outcome in Outcome} == {
        "skipped",
        "checked",
        "all_finished",
        "over_budget",
        "refused",
        "transient_error",
        "waiting_for_search",
        "started",
        "following",
        "finished_success",
        "finished_error",
    }
