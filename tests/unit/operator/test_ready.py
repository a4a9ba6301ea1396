"""Ready of a ChannelProvider: the worker Deployment's pods, as its controller reports them (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from outbound_operator.handlers.workloads import image_pull_failure, owner, unschedulable
from outbound_operator.reconcile import status
from outbound_operator.reconcile.circuit import initial
from outbound_operator.reconcile.conditions import Condition
from outbound_operator.reconcile.status import Observed, Rollout

T0 = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def deployment(desired: int | None, generation: int = 2, **observed: Any) -> dict[str, Any]:
    spec = {} if desired is None else {"replicas": desired}
    return {"metadata": {"generation": generation}, "spec": spec, "status": {"observedGeneration": 2, **observed}}


@pytest.mark.parametrize(
    ("live", "expected"),
    [
        (deployment(2, updatedReplicas=2, replicas=2, availableReplicas=2), (True, "WorkersAvailable")),
        (deployment(0), (True, "NoWorkersRequested")),
        (deployment(2, updatedReplicas=2, replicas=2, availableReplicas=1), (False, "WorkersUnavailable")),
        (deployment(1, updatedReplicas=1, replicas=1), (False, "WorkersUnavailable")),
        (deployment(2, updatedReplicas=1, replicas=3, availableReplicas=2), (False, "RolloutInProgress")),
        (deployment(1, updatedReplicas=1, replicas=2, availableReplicas=1), (False, "RolloutInProgress")),
        (deployment(1, generation=3, updatedReplicas=1, replicas=1, availableReplicas=1), (False, "RolloutPending")),
        (deployment(None, updatedReplicas=1, replicas=1, availableReplicas=1), (True, "WorkersAvailable")),
    ],
)
def test_ready_needs_every_desired_pod_updated_and_available(live: dict[str, Any], expected: tuple[bool, str]) -> None:
    condition = status.ready(None, True, Rollout.of(live))
    assert (condition.status, condition.reason) == expected


def test_the_message_says_how_many_pods_are_missing_and_why() -> None:
    missing = Rollout.of(deployment(2, updatedReplicas=2, replicas=2, availableReplicas=1))
    assert status.ready(None, True, missing).message == "1 of 2 worker pods available"
    rolling = Rollout.of(deployment(2, updatedReplicas=1, replicas=3, availableReplicas=2))
    assert status.ready(None, True, rolling).message == (
        "Deployment rollout in progress: 1 of 2 pods updated; 2 of 2 worker pods available"
    )
    placed = Rollout.of(deployment(1, updatedReplicas=1, replicas=1), "0/1 nodes are available: 1 node(s) didn't match")
    condition = status.ready(None, True, placed)
    assert (condition.reason, condition.message) == (
        "PodsUnschedulable",
        "0 of 1 worker pods available; pods unschedulable: 0/1 nodes are available: 1 node(s) didn't match",
    )
    stuck = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}
    late = Rollout.of(deployment(1, updatedReplicas=1, replicas=1, conditions=[stuck]))
    assert status.ready(None, True, late) == Condition(
        "Ready", False, "ProgressDeadlineExceeded", "0 of 1 worker pods available; too slow"
    )
    paused = status.ready(None, False, Rollout.of(deployment(1, updatedReplicas=1, replicas=1, availableReplicas=1)))
    assert paused.message == "1 of 1 worker pods available (disabled: messages wait QUEUED)"


def test_reconciled_says_applied_while_ready_says_the_pods_are_missing() -> None:
    observed = Observed(
        initial(T0), None, 0, 10, 1, 0, rollout=Rollout.of(deployment(1, updatedReplicas=1, replicas=1))
    )
    by_type = {c.type: c for c in status.conditions(observed, None, True)}
    assert (by_type["Reconciled"].status, by_type["Reconciled"].reason) == (True, "Applied")
    assert (by_type["Ready"].status, by_type["Ready"].message) == (False, "0 of 1 worker pods available")
    failed = {c.type: c for c in status.conditions(observed, "Forbidden: no", True)}
    assert (failed["Reconciled"].status, failed["Ready"].status) == (False, False)


def test_the_scheduler_message_and_the_owner_are_read_from_the_objects() -> None:
    waiting = {
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes are available",
                }
            ]
        }
    }
    assert unschedulable([{"status": {}}, waiting]) == "0/1 nodes are available"
    assert unschedulable([{"status": {"phase": "Pending"}}]) == ""
    ref = {"apiVersion": "messaging.outbound.dev/v1alpha1", "kind": "ChannelProvider", "name": "sms", "uid": "u1"}
    assert owner({"metadata": {"ownerReferences": [ref]}}) == ("sms", "u1")
    assert owner({"metadata": {}}) is None


def test_a_worker_pod_that_cannot_pull_its_image_is_named_in_ready() -> None:
    said = 'Back-off pulling image "10.244.7.1:5000/outbound/sender:1": 401 Unauthorized'
    backing_off = {"state": {"waiting": {"reason": "ImagePullBackOff", "message": said}}}
    creating = {"state": {"waiting": {"reason": "ContainerCreating"}}}
    pods = [{"status": {"containerStatuses": [creating]}}, {"status": {"containerStatuses": [backing_off]}}]
    assert image_pull_failure(pods) == f"ImagePullBackOff: {said}"
    assert image_pull_failure([{"status": {"containerStatuses": [creating]}}, {"status": {}}]) == ""
    bare = {"state": {"waiting": {"reason": "ErrImagePull"}}}
    assert image_pull_failure([{"status": {"containerStatuses": [bare]}}]) == "ErrImagePull"

    stuck = Rollout.of(deployment(1, updatedReplicas=1, replicas=1), "", f"ImagePullBackOff: {said}")
    assert status.ready(None, True, stuck) == Condition(
        "Ready",
        False,
        "ImagePullFailing",
        f"0 of 1 worker pods available; image pull failing: ImagePullBackOff: {said}",
    )
    rolling = Rollout.of(deployment(1, updatedReplicas=1, replicas=2, availableReplicas=1), "", "ErrImagePull")
    assert status.ready(None, True, rolling) == Condition(
        "Ready",
        False,
        "RolloutInProgress",
        "Deployment rollout in progress: 1 old pod still running; 1 of 1 worker pods available; "
        "image pull failing: ErrImagePull",
    )
