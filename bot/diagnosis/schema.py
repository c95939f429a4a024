"""The Pod and Event fields the diagnosis reads, as typed models for input nobody validated.

The live API hands over objects its own schema already checked. Files (`diagnose --pod-json`,
a ticket attachment, a hand-edited YAML) come with no such promise, so bot/cli/offline.py validates
them here first: every field that facts.py, events.py, engine.py and owners.py read is declared
with its type, strictly (a string is not a number, a list is not a name, "lots" is not a count),
and every other field is ignored, so a real `kubectl get -o json` of any version passes.
`model_dump(exclude_unset=True)` then gives the diagnosis the same camelCase dict shape the
live path gives it, holding only validated fields.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictBool, StrictInt, StrictStr
from pydantic_core import PydanticCustomError

from bot.diagnosis.facts import TimeOutOfRange, read_k8s_time

#: Event counts are int32 in the API.
MAX_COUNT = 2**31 - 1


def _k8s_time(value: Any) -> str:
    """An RFC 3339 string within the believable range (YAML's unquoted timestamps allowed)."""
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        value = stamp.isoformat().replace("+00:00", "Z")
    elif isinstance(value, date) or not isinstance(value, str):
        raise PydanticCustomError("k8s_time_type", "must be an RFC 3339 time such as "
                                  "2026-11-28T14:51:32Z")
    try:
        read_k8s_time(value)
    except TimeOutOfRange as exc:
        raise PydanticCustomError("k8s_time_range", "is out of range ({problem})",
                                  {"problem": str(exc)[:80]}) from None
    except ValueError:
        raise PydanticCustomError("k8s_time_format", "must be an RFC 3339 time such as "
                                  "2026-11-28T14:51:32Z, not {value!r}",
                                  {"value": value[:40]}) from None
    return value


Time = Annotated[str, PlainValidator(_k8s_time)]
Count = Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)]


class _Model(BaseModel):
    """Unknown fields are ignored (every Kubernetes version adds some); known ones are strict."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# -- Pod -------------------------------------------------------------------------------------


class OwnerReference(_Model):
    kind: StrictStr
    name: StrictStr
    controller: StrictBool | None = None


class ObjectMeta(_Model):
    name: StrictStr | None = None
    namespace: StrictStr | None = None
    uid: StrictStr | None = None
    labels: dict[str, StrictStr] | None = None
    ownerReferences: list[OwnerReference] | None = None
    creationTimestamp: Time | None = None


class PodMeta(ObjectMeta):
    name: StrictStr


class Container(_Model):
    name: StrictStr
    image: StrictStr | None = None
    imagePullPolicy: StrictStr | None = None


class LocalObjectReference(_Model):
    name: StrictStr | None = None


class PodSpec(_Model):
    containers: list[Container] | None = None
    initContainers: list[Container] | None = None
    imagePullSecrets: list[LocalObjectReference] | None = None
    serviceAccountName: StrictStr | None = None
    serviceAccount: StrictStr | None = None
    nodeName: StrictStr | None = None


class StateWaiting(_Model):
    reason: StrictStr | None = None
    message: StrictStr | None = None


class StateOther(_Model):
    """`running` / `terminated`: only their presence is read."""


class ContainerState(_Model):
    waiting: StateWaiting | None = None
    running: StateOther | None = None
    terminated: StateOther | None = None


class ContainerStatus(_Model):
    name: StrictStr
    state: ContainerState | None = None


class PodStatus(_Model):
    containerStatuses: list[ContainerStatus] | None = None
    initContainerStatuses: list[ContainerStatus] | None = None


class Pod(_Model):
    kind: StrictStr | None = None
    metadata: PodMeta
    spec: PodSpec | None = None
    status: PodStatus | None = None


# -- Event (core/v1, both dialects) ----------------------------------------------------------


class ObjectReference(_Model):
    kind: StrictStr | None = None
    name: StrictStr | None = None
    namespace: StrictStr | None = None
    uid: StrictStr | None = None
    fieldPath: StrictStr | None = None


class EventSeries(_Model):
    count: Count | None = None
    lastObservedTime: Time | None = None


class Event(_Model):
    kind: StrictStr | None = None
    metadata: ObjectMeta | None = None
    involvedObject: ObjectReference | None = None
    regarding: ObjectReference | None = None
    type: StrictStr | None = None
    reason: StrictStr | None = None
    message: StrictStr | None = None
    note: StrictStr | None = None
    count: Count | None = None
    firstTimestamp: Time | None = None
    lastTimestamp: Time | None = None
    eventTime: Time | None = None
    series: EventSeries | None = None


# -- Secret (only for `diagnose --pod-json … --registry --secret-json FILE`) ------------------


class Secret(_Model):
    """A pull secret someone attached: its type and data are read by
    bot/registry/pullsecrets.py, for the one registry request, and never shown."""

    kind: StrictStr | None = None
    metadata: ObjectMeta | None = None
    type: StrictStr | None = None
    data: dict[str, StrictStr] | None = None


# -- the file around them --------------------------------------------------------------------


class Document(_Model):
    """What a file holds: one object, or a List (`kind: List` / `PodList` / `EventList`)."""

    kind: StrictStr | None = None
    items: list[dict[str, Any]] | None = None


MODELS: dict[str, type[_Model]] = {"Pod": Pod, "Event": Event, "Secret": Secret}
