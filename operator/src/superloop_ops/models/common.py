"""Shared building blocks for the custom-resource models.

Every kind is parsed at the boundary (`from_body`) into pydantic models whose camelCase aliases
are exactly the CRD field names. The CRD schema is generated from the same models
(`operator/tools/gen_crds.py`), so a rule is declared once, next to the field it guards:

* ranges, enums, patterns and defaults are ordinary pydantic constraints;
* cross-field rules are `CelRule`s in a model's ``cel_rules``: the generator emits them as
  ``x-kubernetes-validations`` (the apiserver rejects a bad object on ``kubectl apply``) and the
  model runs the Python mirror (``check``) so the operator and the CLI fail closed identically
  when an object arrives some other way (a test body, an older CRD, a dry run);
* the few CRD-only facts (printer columns, short names, status subresource) live in each kind's
  `CrdInfo`.

Spec models forbid unknown keys (a typo must not be silently ignored). Status and metadata models
ignore them: status is ours to write, and object metadata carries many server-managed fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from superloop_ops import errors

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "CONDITION_REASON_PATTERN",
    "DEFAULT_RECONCILE_INTERVAL_SECONDS",
    "GROUP_VERSION",
    "LOOP_ID_PATTERN",
    "READY_CONDITION_PATH",
    "SECRET_OPT_IN_LABEL",
    "SECRET_OPT_IN_VALUE",
    "TIMESTAMP_PATTERN",
    "CamelModel",
    "CelRule",
    "Condition",
    "ConditionStatus",
    "ConditionedStatus",
    "ConfigMapKeyRef",
    "CrdInfo",
    "JsonObject",
    "KindModel",
    "LocalObjectRef",
    "LoopId",
    "ObjectMeta",
    "OwnerReference",
    "PrinterColumn",
    "SecretKeyRef",
    "ShortText",
    "SpecModel",
    "StatusModel",
    "Timestamp",
    "format_timestamp",
    "format_validation_error",
    "list_default",
    "nested",
    "parse_timestamp",
]

API_GROUP = "ops.superloop.dev"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

#: The only timestamp form the contract accepts: UTC, whole seconds, literal ``Z``.
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
#: Loop ids become path components (``.superloop/loops/<id>/``) and label values, so they are
#: restricted to a label-safe alphabet and length.
LOOP_ID_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
SECRET_OPT_IN_LABEL = f"{API_GROUP}/usable-by"
"""A Secret the operator may read carries this label with :data:`SECRET_OPT_IN_VALUE`: naming a
Secret in a Loop (or Fleet) is not enough, its owner must opt it in (no confused deputy)."""
SECRET_OPT_IN_VALUE = "superloop-ops"  # noqa: S105 - a label value, not a secret
#: metav1.Condition's reason pattern.
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
_TIMESTAMP_RE = re.compile(TIMESTAMP_PATTERN)
#: Seconds between two passes of a Loop or a Fleet when the spec names none; also the operator's
#: default for Loops whose spec carries no usable interval (``SUPERLOOP_RECONCILE_INTERVAL_SECONDS``).
DEFAULT_RECONCILE_INTERVAL_SECONDS = 60
#: The JSONPath of the Ready condition, as kubectl evaluates printer columns.
READY_CONDITION_PATH = '.status.conditions[?(@.type=="Ready")]'

JsonObject = dict[str, Any]
ConditionStatus = Literal["True", "False", "Unknown"]


_T = TypeVar("_T")
_M = TypeVar("_M", bound=BaseModel)


def nested(factory: Callable[[], _M]) -> _M:
    """A nested settings object that is always present, in Python and (via a CRD default) in the API.

    The CRD default is the fully defaulted object rather than ``{}``: the apiserver validates a
    default (CEL rules included) as written, without filling the nested defaults first.
    ``kubectl get -o yaml`` then shows every effective setting.
    """
    published: dict[str, Any] = factory().model_dump(mode="json", by_alias=True, exclude_none=True)
    result: _M = Field(default_factory=factory, json_schema_extra={"default": published})
    return result


def list_default(factory: Callable[[], list[_T]], *, max_length: int) -> list[_T]:
    """A list field whose Python default is also published as the CRD default."""
    published: list[Any] = list(factory())
    result: list[_T] = Field(
        default_factory=factory, max_length=max_length, json_schema_extra={"default": published}
    )
    return result


def format_timestamp(moment: datetime) -> str:
    """Render an aware datetime in the contract's form (UTC, whole seconds, ``Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str) -> datetime:
    """Parse a strict ``YYYY-MM-DDTHH:MM:SSZ`` string; a bad form or impossible date raises ValueError."""
    message = f"must be an ISO-8601 timestamp (YYYY-MM-DDTHH:MM:SSZ): {value!r}"
    if not _TIMESTAMP_RE.match(value):
        raise ValueError(message)
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError as exc:  # an impossible calendar date such as Feb 30
        raise ValueError(message) from exc


def _check_timestamp(value: str) -> str:
    parse_timestamp(value)
    return value


Timestamp = Annotated[str, Field(pattern=TIMESTAMP_PATTERN, max_length=20), AfterValidator(_check_timestamp)]
LoopId = Annotated[str, Field(pattern=LOOP_ID_PATTERN, min_length=1, max_length=63)]
#: Bounded free text: the apiserver estimates CEL cost from maxLength, so strings get a bound.
ShortText = Annotated[str, Field(min_length=1, max_length=253)]


@dataclass(frozen=True)
class CelRule:
    """One cross-field rule, emitted as CEL for the apiserver and mirrored in Python.

    ``check`` receives the validated model and returns True when the rule holds; ``None`` marks a
    rule only the apiserver can evaluate (transition rules such as ``self == oldSelf``);
    ``rule=None`` marks a Python-only mirror of something the schema enforces structurally
    (a list-map's key uniqueness), kept for the reference's message.

    ``field_path`` (relative to the object the rule sits on, e.g. ``.maxTimeSeconds``) makes the
    apiserver report the offending field (``spec.service.maxTimeSeconds: Invalid value: ...``).
    ``api_message`` is what the apiserver says when it differs from the Python mirror's
    ``message`` (the mirror keeps the reference's wording for registry files, ``policy.…``; the
    apiserver speaks of the object's own fields, ``spec.…``).
    """

    rule: str | None
    message: str
    check: Callable[[Any], bool] | None = None
    field_path: str | None = None
    reason: str | None = None
    api_message: str | None = None
    optional_old_self: bool = False
    """A transition rule also evaluated on create, with ``oldSelf`` an optional (ratcheting)."""

    def to_schema(self) -> JsonObject:
        out: JsonObject = {"rule": self.rule, "message": self.api_message or self.message}
        if self.field_path is not None:
            out["fieldPath"] = self.field_path
        if self.reason is not None:
            out["reason"] = self.reason
        if self.optional_old_self:
            out["optionalOldSelf"] = True
        return out


class CamelModel(BaseModel):
    """Base of every model: camelCase aliases, Python names accepted too, CEL rules mirrored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
        validate_default=False,
        use_attribute_docstrings=True,
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    @pydantic.model_validator(mode="after")
    def _check_cel_rules(self) -> Self:
        for cel in type(self).cel_rules:
            if cel.check is not None and not cel.check(self):
                raise ValueError(cel.message)
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        target = handler.resolve_ref_schema(json_schema)
        rules = [c.to_schema() for c in cls.cel_rules if c.rule is not None]
        if rules:
            target["x-kubernetes-validations"] = rules
        return json_schema

    def to_body(self) -> JsonObject:
        """Dump with CRD field names, leaving out unset optional fields (``None``)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SpecModel(CamelModel):
    """Desired state, owned by Git: unknown keys are an error, and so is a value of the wrong JSON
    type (strict: ``"yes"`` is not a boolean, ``"3"`` is not an integer), as for the apiserver.
    """

    model_config = ConfigDict(strict=True)


class StatusModel(CamelModel):
    """Observed state, written only by the operator: tolerant of keys a newer operator added."""

    model_config = ConfigDict(extra="ignore")


class LocalObjectRef(SpecModel):
    """A reference to an object of a known kind in the same namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the object, in this object's namespace."""


class SecretKeyRef(SpecModel):
    """A key in a Secret in the object's namespace; the value is read at use and never stored."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the Secret, in this object's namespace."""
    key: Annotated[str, Field(min_length=1, max_length=253)] = "token"
    """Key of the Secret holding the value."""


class ConfigMapKeyRef(SpecModel):
    """A key in a ConfigMap in the object's namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the ConfigMap, in this object's namespace."""
    key: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """Key of the ConfigMap; absent means the documented default key."""


class Condition(StatusModel):
    """One entry of ``status.conditions`` in the shape of metav1.Condition."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    """Condition type: `Ready`, `Reconciling`, `Stalled`, or one of the kind's own (`Healthy`, `Degraded`,
    `Diverged`, `Approved`, `Executed`, `Applied`)."""
    status: ConditionStatus
    """`True`, `False` or `Unknown`."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The `metadata.generation` this condition was computed from."""
    last_transition_time: Timestamp
    """When `status` last changed (YYYY-MM-DDTHH:MM:SSZ)."""
    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)]
    """CamelCase reason (the status's snake_case reason code, e.g. `SourceNotFound`); docs/runbook.md
    explains each."""
    message: Annotated[str, Field(max_length=32768)] = ""
    """Human-readable detail of the reason."""


class ConditionedStatus(StatusModel):
    """The status head every kind shares: the generation last acted on and its conditions.

    ``conditions`` is a list-map keyed by ``type`` so that server-side apply merges one condition
    at a time, as for metav1.Condition lists.
    """

    observed_generation: int | None = None
    """The `metadata.generation` of the spec the operator last acted on."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Latest observations (metav1.Condition shape), one per type: `Ready` sums up; `Reconciling`
    and `Stalled` follow the kstatus conventions."""
    reason_summary: str | None = None
    """The status's reason codes as one readable comma-separated list (the `Reasons` column)."""


class OwnerReference(StatusModel):
    """The fields of metav1.OwnerReference the operator reads (Loops owned by a Fleet)."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(StatusModel):
    """The part of object metadata the operator uses; server-managed extras are ignored."""

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    owner_references: list[OwnerReference] = Field(default_factory=list)


@dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str | None = None

    def to_schema(self) -> JsonObject:
        out: JsonObject = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.priority:
            out["priority"] = self.priority
        if self.description is not None:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class CrdInfo:
    """CRD-only facts about a kind that the JSON schema cannot carry."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = ("superloop",)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{API_GROUP}"

    def all_columns(self) -> tuple[PrinterColumn, ...]:
        """Every column ``kubectl get`` shows: ``Ready`` and its reason, the kind's own, the
        readable reasons, ``Age``; the Ready message only in ``-o wide`` (priority 1)."""
        reasons_shown = any(c.json_path == ".status.reasonSummary" for c in self.printer_columns)
        reasons = () if reasons_shown else (PrinterColumn("Reasons", ".status.reasonSummary", priority=1),)
        return (
            PrinterColumn("Ready", f"{READY_CONDITION_PATH}.status", description="Ready condition"),
            PrinterColumn("Status", f"{READY_CONDITION_PATH}.reason", description="Ready's reason"),
            *self.printer_columns,
            *reasons,
            PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
            PrinterColumn("Message", f"{READY_CONDITION_PATH}.message", priority=1),
        )


def format_validation_error(kind: str, name: str | None, exc: pydantic.ValidationError) -> str:
    """One readable line per problem, with the CRD field path (``spec.service.baseUrl``)."""
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err["loc"]) or "<object>"
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        lines.append(f"{path}: {msg}")
    who = f"{kind} {name}" if name else kind
    return f"invalid {who}: " + "; ".join(lines)


def _plain(value: Any) -> Any:
    """Deep-copy mappings and sequences into dicts and lists (kopf hands out Mapping views)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class KindModel(StatusModel):
    """Base of the top-level kinds: apiVersion, kind, metadata; subclasses add spec and status."""

    crd: ClassVar[CrdInfo]

    api_version: str = GROUP_VERSION
    kind: str = ""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        """Parse a raw object (a kopf body, a YAML document); bad input raises InvalidSpecError.

        Spec models are strict, so timestamps must arrive as strings: quote them in YAML read
        with PyYAML, which would otherwise turn ``2026-02-23T00:00:00Z`` into a datetime.
        """
        raw: dict[str, Any] = _plain(body)
        meta = raw.get("metadata")
        name = meta.get("name") if isinstance(meta, Mapping) else None
        kind = cls.crd.kind
        if raw.get("kind", kind) != kind:
            raise errors.InvalidSpecError(f"invalid {kind} {name or ''}: kind is {raw.get('kind')!r}".strip())
        if raw.get("apiVersion", GROUP_VERSION) != GROUP_VERSION:
            raise errors.InvalidSpecError(
                f"invalid {kind} {name or ''}: apiVersion must be {GROUP_VERSION},"
                f" got {raw.get('apiVersion')!r}"
            )
        raw.setdefault("kind", kind)
        try:
            return cls.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise errors.InvalidSpecError(format_validation_error(kind, name, exc)) from exc
