"""Every notification that carries patient data is a read, decided and recorded before it leaves.

A subscription outlives the token that created it (SMART access tokens last minutes), so a
delivery is decided for the principal that created it, as it was then (roles, scopes, client)
and as the world is now: the access policy (``access.policy``) asks the care teams and
consents in force at the moment of sending, the same rules and the same reason codes as a
request (a patient's withdrawn consent refuses the next notification), and a user the
embedded directory has disabled since is refused as their tokens are (``user-disabled``), and
so is an app disabled since (``app-disabled``).
The decision - permit or refusal - is committed to the access trail before anything is sent
(``access.policy.decide_and_record``); if the trail cannot record, nothing is sent.

The trail names the delivery by a route template (:data:`REST_HOOK_ROUTE`,
:data:`WEBSOCKET_ROUTE`) and the notification Bundle's id as the request id, so an auditor
can tie the access event to the exact notification.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from access.errors import UserDisabled
from access.policy import (
    AccessRequest,
    DataClass,
    Decision,
    Policy,
    decide_and_record,
    disabled_user_access,
)
from access.tokens import Principal
from access.trail import READ, AccessTrail

REST_HOOK_ROUTE = "NOTIFY rest-hook /fhir/Subscription/{id}"
WEBSOCKET_ROUTE = "NOTIFY websocket /fhir/ws"
Judge = Callable[[Principal, str, DataClass, tuple[str, ...], str, str], Decision]


class DeliveryAccess:
    """The :data:`Judge` of deliveries: ``(owner, patient, data class, codes, route,
    notification id) -> Decision``, recorded. Blocking (the trail commits with fsync)."""

    def __init__(
        self,
        policy: Policy,
        trail: AccessTrail,
        *,
        disabled: Callable[[Principal], bool] = lambda _: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy
        self._trail = trail
        self._disabled = disabled
        self._clock = clock

    def __call__(
        self,
        owner: Principal,
        patient: str,
        data_class: DataClass,
        codes: tuple[str, ...],
        route: str,
        notification_id: str,
    ) -> Decision:
        if self._disabled(owner):
            refused = UserDisabled(
                owner.subject, owner.client_id, owner.roles, owner.token_id, kind=owner.kind
            )
            now = int(self._clock() * 1000)
            access = disabled_user_access(
                refused, now, route, (patient,), (data_class,), notification_id
            )
            self._trail.record(access)
            return Decision(
                False, access.reason, access.agent.role, READ, (patient,), (data_class,), ()
            )
        asked = AccessRequest(data_class, (patient,), (), codes)
        return decide_and_record(
            self._policy, self._trail, owner, asked, route, notification_id, self._clock
        )
