"""AWS IAM identity-policy evaluation, table-driven and stdlib-only.

Why our own: moto's evaluator (``moto.iam.access_control``) checks only ``StringEquals`` and
treats every other condition as met, so the local cloud could prove actions and resources but
never conditions. This module follows AWS's documented evaluation logic for the principal's
identity-based policies (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html;
every page used is cited in ``tests/localcloud/test_iam_evaluation.py``).

Evaluation order (``evaluate``):

1. Every statement of every policy is matched against the request: Action/NotAction, then
   Resource/NotResource, then the Condition block. A statement applies only when all three match.
2. Any applicable ``Deny`` -> explicit deny (it wins over every Allow).
3. Otherwise any applicable ``Allow`` -> allow.
4. Otherwise -> implicit deny (the default).

``Decision.statements`` names the statements that decided (every matching Deny, or every matching
Allow, so a caller can see a request that only one statement grants) as ``policy/Sid``, or
``policy/#index`` (0-based, in document order) for a statement without a Sid.

Matching rules:

* Action: case-insensitive glob (``*`` any run, ``?`` one character); ``NotAction`` applies when
  the action matches none of the listed patterns.
* Resource: case-sensitive glob. A ``*`` that ends an ARN segment (followed by ``:`` or the end of
  the pattern) may run across colons; any other ``*``/``?`` stays inside its segment, as AWS
  documents. ``Resource: "*"`` matches everything; a request resource of ``"*"`` (actions without
  resource-level permissions) is matched only by patterns that match the literal ``*``.
* Condition: operators AND, keys within an operator AND, policy values for one key OR; for the
  negated operators (``...Not...``, ``NotIpAddress``) the values are combined as NOR. A key absent
  from the request context makes a positive operator false and a negated one true; ``...IfExists``
  makes a missing key true; ``Null`` tests presence. A key whose value is an empty sequence counts
  as absent (AWS treats an empty data set like a missing key).
* Multivalued keys (a sequence in the context): ``ForAllValues:`` is true when every request value
  passes the operator, and also when the key is missing (AWS warns that this makes Allow
  statements permissive: pair it with ``Null: false``); ``ForAnyValue:`` needs at least one
  passing value and is false for a missing key, even with ``IfExists`` (AWS behaves so).
  A single value with a set qualifier is a one-element set. A plain operator on a multivalued
  key is not supported by AWS (a set operator is required), so it evaluates false.
* Policy variables (``${aws:username}``, ``${aws:PrincipalTag/team}``, ``${key, 'default'}``,
  ``${*}``/``${?}``/``${$}`` for literal ``*``/``?``/``$``) are substituted in Resource and in the
  values of the String, Arn and Bool operators, from the request context (case-insensitive keys,
  single-valued keys only), and only for ``"Version": "2012-10-17"`` documents; older or missing
  versions keep them literal. Substituted text is literal, never a wildcard. An unresolvable
  variable never helps a statement apply: that value matches nothing, and for NotResource or a
  negated operator it makes the element not match (AWS calls such a statement invalid).

Fail closed: an unknown operator or qualifier, a malformed Condition block, a missing Effect or
Action, or a value of the wrong type makes the condition false, so the statement does not apply;
nothing here raises for a bad document. (For a Deny statement that means it does not deny: AWS
would have refused such a document at PutPolicy time.)

Not modelled: resource-based policies, service control and resource control policies,
permission boundaries, session policies, cross-account rules, ``Principal``/``NotPrincipal``
(meaningless in identity policies), and the restriction of Resource variables to the part after
the fifth colon.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import operator as op
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

ContextValue = str | bool | Sequence[str]
VARIABLES_VERSION = "2012-10-17"  # the policy language version that introduced policy variables


@dataclass(frozen=True)
class AuthRequest:
    action: str  # "service:Operation", matched case-insensitively
    resource: str  # an ARN, or "*"
    context: Mapping[str, ContextValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "explicit-deny" | "allow" | "implicit-deny"
    statements: tuple[str, ...]  # the Deny statements that matched, or every Allow that matched


# -- the request context --------------------------------------------------------------------------
Values = str | tuple[str, ...]  # a tuple: a multivalued key


def _as_text(value: object) -> str | None:
    """Policy and context scalars compare as strings; JSON booleans as "true"/"false"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _normalise(context: Mapping[str, object]) -> dict[str, Values]:
    """Lower-cased keys (AWS key names are case-insensitive); empty sequences dropped (absent)."""
    found: dict[str, Values] = {}
    for key, value in context.items():
        text = _as_text(value)
        if text is not None:
            found[str(key).lower()] = text
        elif isinstance(value, Sequence) and value:
            found[str(key).lower()] = tuple(t for t in map(_as_text, value) if t is not None)
    return found


def _context_of(request: object) -> dict[str, Values]:
    # getattr: callers may pass any object with .action and .resource (no context at all)
    return _normalise(getattr(request, "context", None) or {})


# -- patterns and policy variables ----------------------------------------------------------------
Token = tuple[str, str]  # ("text" | "star" | "qmark" | "colon", text)
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_DEFAULTED = re.compile(r"^\s*([^,]+?)\s*,\s*'([^']*)'\s*$")
_RAW = {"*": "star", "?": "qmark", ":": "colon"}


def _raw_tokens(text: str) -> list[Token]:
    return [(_RAW.get(char, "text"), char) for char in text]


def _resolve(body: str, context: Mapping[str, Values]) -> str | None:
    """The text a ``${...}`` stands for, or None when it cannot be resolved."""
    if body.strip() in ("*", "?", "$"):
        return body.strip()
    defaulted = _DEFAULTED.match(body)
    name, default = (defaulted.group(1), defaulted.group(2)) if defaulted else (body.strip(), None)
    value = context.get(name.lower())
    # a multivalued key cannot be a policy variable (AWS), so it resolves like a missing one
    return value if isinstance(value, str) else default


def _tokens(pattern: str, context: Mapping[str, Values], variables: bool) -> list[Token] | None:
    """The pattern as tokens, variables substituted as literal text; None if one is unresolved."""
    if not variables:
        return _raw_tokens(pattern)
    tokens: list[Token] = []
    position = 0
    for found in _VARIABLE.finditer(pattern):
        resolved = _resolve(found.group(1), context)
        if resolved is None:
            return None
        tokens += _raw_tokens(pattern[position:found.start()]) + [("text", resolved)]
        position = found.end()
    return tokens + _raw_tokens(pattern[position:])


_GLOB = {"star": ".*", "qmark": "."}


def _glob_regex(tokens: Sequence[Token], wildcards: bool) -> str:
    return "".join(_GLOB[kind] if wildcards and kind in _GLOB else re.escape(text)
                   for kind, text in tokens)


def _resource_regex(tokens: Sequence[Token]) -> str:
    """Only a ``*`` that ends a segment may cross colons (AWS Resource element docs)."""
    parts = []
    for index, (kind, text) in enumerate(tokens):
        ends_segment = index + 1 == len(tokens) or tokens[index + 1][0] == "colon"
        if kind == "star":
            parts.append(".*" if ends_segment else "[^:]*")
        elif kind == "qmark":
            parts.append("[^:]")
        else:
            parts.append(re.escape(text))
    return "".join(parts)


def _fullmatch(regex: str, value: str, ignore_case: bool = False) -> bool:
    return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


# -- condition operators: name -> comparison ------------------------------------------------------
# A comparison answers whether one request value matches one policy value: True, False, or None
# when the policy value holds a variable that cannot be resolved.
Comparison = Callable[[str, str, Mapping[str, Values], bool], bool | None]


def _string(wildcards: bool, ignore_case: bool = False) -> Comparison:
    def compare(value: str, policy: str, context: Mapping[str, Values], variables: bool) -> bool | None:
        tokens = _tokens(policy, context, variables)
        if tokens is None:
            return None
        return _fullmatch(_glob_regex(tokens, wildcards), value, ignore_case)
    return compare


def _split_segments(tokens: Sequence[Token]) -> list[list[Token]]:
    """An ARN pattern's six colon-separated segments (the last one keeps its colons)."""
    segments: list[list[Token]] = [[]]
    for token in tokens:
        if token[0] == "colon" and len(segments) < 6:
            segments.append([])
        else:
            segments[-1].append(token)
    return segments


def _arn(value: str, policy: str, context: Mapping[str, Values], variables: bool) -> bool | None:
    """ArnEquals/ArnLike: segment by segment, wildcards confined to their segment."""
    tokens = _tokens(policy, context, variables)
    if tokens is None:
        return None
    patterns, parts = _split_segments(tokens), value.split(":", 5)
    if len(patterns) != 6 or len(parts) != 6 or parts[0] != "arn":
        return False  # not an ARN: no match
    return all(_fullmatch(_glob_regex(p, True), part) for p, part in zip(patterns, parts, strict=True))


def _bool(value: str, policy: str, context: Mapping[str, Values], variables: bool) -> bool | None:
    tokens = _tokens(policy, context, variables)
    if tokens is None:
        return None
    return value.lower() == "".join(text for _, text in tokens).lower()


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _date(text: str) -> datetime.datetime | None:
    """ISO 8601 (W3C profile) or epoch seconds, as AWS accepts; naive times are UTC."""
    stamp = _number(text)
    try:
        when = (datetime.datetime.fromtimestamp(stamp, datetime.UTC) if stamp is not None
                else datetime.datetime.fromisoformat(text))
    except (ValueError, OverflowError, OSError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def _ordered(parse: Callable[[str], object], relation: Callable[[object, object], bool]) -> Comparison:
    """Numeric and Date operators: no variables, no wildcards; unparsable values never match."""
    def compare(value: str, policy: str, context: Mapping[str, Values], variables: bool) -> bool | None:
        left, right = parse(value), parse(policy)
        return left is not None and right is not None and relation(left, right)
    return compare


def _ip(value: str, policy: str, context: Mapping[str, Values], variables: bool) -> bool | None:
    try:  # an address without a prefix is a /32 (or /128) network
        return ipaddress.ip_address(value.strip()) in ipaddress.ip_network(policy.strip(), strict=False)
    except ValueError:
        return False


def _binary(value: str, policy: str, context: Mapping[str, Values], variables: bool) -> bool | None:
    return value == policy  # both base64 text: byte-for-byte equality of the encoded forms


@dataclass(frozen=True)
class Operator:
    compare: Comparison
    negated: bool = False
    variables: bool = False  # policy variables allowed in the values (String, Arn, Bool)


def _family(prefix: str, parse: Callable[[str], object]) -> dict[str, Operator]:
    relations = {"Equals": op.eq, "LessThan": op.lt, "LessThanEquals": op.le,
                 "GreaterThan": op.gt, "GreaterThanEquals": op.ge}
    family = {prefix + name: Operator(_ordered(parse, rel)) for name, rel in relations.items()}
    family[prefix + "NotEquals"] = Operator(_ordered(parse, op.eq), negated=True)
    return family


OPERATORS: dict[str, Operator] = {
    "StringEquals": Operator(_string(False), variables=True),
    "StringNotEquals": Operator(_string(False), negated=True, variables=True),
    "StringEqualsIgnoreCase": Operator(_string(False, ignore_case=True), variables=True),
    "StringNotEqualsIgnoreCase": Operator(_string(False, ignore_case=True), negated=True, variables=True),
    "StringLike": Operator(_string(True), variables=True),
    "StringNotLike": Operator(_string(True), negated=True, variables=True),
    "ArnEquals": Operator(_arn, variables=True),
    "ArnLike": Operator(_arn, variables=True),
    "ArnNotEquals": Operator(_arn, negated=True, variables=True),
    "ArnNotLike": Operator(_arn, negated=True, variables=True),
    "Bool": Operator(_bool, variables=True),
    "IpAddress": Operator(_ip),
    "NotIpAddress": Operator(_ip, negated=True),
    "BinaryEquals": Operator(_binary),
    **_family("Numeric", _number),
    **_family("Date", _date),
}
_BY_LOWER_NAME = {name.lower(): operator for name, operator in OPERATORS.items()}
_QUALIFIERS = ("forallvalues", "foranyvalue")


@dataclass(frozen=True)
class _Parsed:
    operator: Operator | None  # None: Null
    qualifier: str | None  # "forallvalues" | "foranyvalue" | None
    if_exists: bool


def _parse_operator(name: str) -> _Parsed | None:
    """``[ForAllValues:|ForAnyValue:]Operator[IfExists]``, or None when unknown (fail closed)."""
    qualifier, _, base = name.lower().rpartition(":")
    if qualifier and qualifier not in _QUALIFIERS:
        return None
    if base == "null":
        return _Parsed(None, qualifier or None, False)
    if_exists = base.endswith("ifexists")
    operator = _BY_LOWER_NAME.get(base.removesuffix("ifexists") if if_exists else base)
    return _Parsed(operator, qualifier or None, if_exists) if operator else None


def _policy_values(raw: object) -> list[str] | None:
    """A key's policy values as strings, or None when malformed (empty, nested, null)."""
    values = raw if isinstance(raw, list) else [raw]
    texts = [text for text in map(_as_text, values) if text is not None]
    return texts if values and len(texts) == len(values) else None


def _value_passes(operator: Operator, value: str, policy: Sequence[str],
                  context: Mapping[str, Values], variables: bool) -> bool:
    """One request value against the policy values: OR, or NOR for a negated operator."""
    results = [operator.compare(value, p, context, variables and operator.variables) for p in policy]
    if operator.negated:
        return None not in results and not any(results)
    return any(result is True for result in results)


def _null(policy: Sequence[str], present: bool) -> bool:
    # Null "true": the key must be absent; "false": it must be present
    return any(p.lower() == ("false" if present else "true") for p in policy)


def _condition_holds(parsed: _Parsed, key: str, policy: Sequence[str],
                     context: Mapping[str, Values], variables: bool) -> bool:
    value = context.get(key.lower())
    if parsed.operator is None:
        return _null(policy, value is not None)
    if value is None:  # the key is not in the request context
        if parsed.qualifier:
            return parsed.qualifier == "forallvalues"
        return parsed.if_exists or parsed.operator.negated
    if parsed.qualifier is None:
        # AWS requires a set operator for a multivalued key; without one: unsupported, false
        return isinstance(value, str) and _value_passes(parsed.operator, value, policy, context, variables)
    members = (value,) if isinstance(value, str) else value
    passes = (_value_passes(parsed.operator, m, policy, context, variables) for m in members)
    return all(passes) if parsed.qualifier == "forallvalues" else any(passes)


def conditions_hold(block: object, context: Mapping[str, Values], variables: bool = True) -> bool:
    """The whole Condition block: every operator and every key must hold."""
    if block is None:
        return True
    if not isinstance(block, Mapping):
        return False
    for name, keys in block.items():
        parsed = _parse_operator(str(name))
        if parsed is None or not isinstance(keys, Mapping):
            return False
        for key, raw in keys.items():
            policy = _policy_values(raw)
            if policy is None or not _condition_holds(parsed, str(key), policy, context, variables):
                return False
    return True


# -- statements -----------------------------------------------------------------------------------
def _listed(element: object) -> list[str] | None:
    """A statement element (a string or a list of strings), or None when malformed."""
    items = element if isinstance(element, list) else [element]
    return items if items and all(isinstance(item, str) for item in items) else None


def _action_matches(pattern: str, action: str) -> bool:
    return _fullmatch(_glob_regex(_raw_tokens(pattern), True), action, ignore_case=True)


def _resource_matches(pattern: str, resource: str, context: Mapping[str, Values],
                      variables: bool) -> bool | None:
    tokens = _tokens(pattern, context, variables)
    return None if tokens is None else _fullmatch(_resource_regex(tokens), resource)


def _element_matches(statement: Mapping, name: str, check: Callable[[str], bool | None]) -> bool:
    """``Name`` applies when any entry matches; ``NotName`` when none does (and none is unknown)."""
    if name in statement:
        patterns = _listed(statement[name])
        return patterns is not None and any(check(p) is True for p in patterns)
    if "Not" + name in statement:
        patterns = _listed(statement["Not" + name])
        results = [check(p) for p in patterns] if patterns is not None else [None]
        return None not in results and not any(results)
    return False  # neither element: not a valid statement


def _statement_matches(statement: Mapping, action: str, resource: str,
                       context: Mapping[str, Values], variables: bool) -> bool:
    return (_element_matches(statement, "Action", lambda p: _action_matches(p, action))
            and _element_matches(statement, "Resource",
                                 lambda p: _resource_matches(p, resource, context, variables))
            and conditions_hold(statement.get("Condition"), context, variables))


def statement_matches(statement: Mapping, request: AuthRequest, variables: bool = True) -> bool:
    """Action, Resource and Condition all match (the Effect is not looked at). ``variables``:
    whether ``${...}`` is substituted (the document's Version is 2012-10-17)."""
    return (isinstance(statement, Mapping)
            and _statement_matches(statement, request.action, request.resource,
                                   _context_of(request), variables))


def _document(document: object) -> Mapping:
    if isinstance(document, str | bytes):  # moto and boto3 sometimes hand back the JSON text
        try:
            document = json.loads(document)
        except ValueError:
            return {}
    return document if isinstance(document, Mapping) else {}


def _statements(name: str, document: object) -> Iterator[tuple[str, Mapping, bool]]:
    """(statement id, statement, variables on) for each statement of one policy document."""
    parsed = _document(document)
    raw = parsed.get("Statement", [])
    statements = [raw] if isinstance(raw, Mapping) else raw if isinstance(raw, list) else []
    variables = parsed.get("Version") == VARIABLES_VERSION
    for index, statement in enumerate(statements):
        sid = statement.get("Sid") if isinstance(statement, Mapping) else None
        yield (f"{name}/{sid}" if sid else f"{name}/#{index}"), statement, variables


def statement_ids(policies: Sequence[tuple[str, Mapping]]) -> list[str]:
    """Every statement id, in document order: ``policy/Sid``, or ``policy/#index`` (from 0)."""
    return [sid for name, document in policies for sid, _, _ in _statements(name, document)]


def evaluate(policies: Sequence[tuple[str, Mapping]], request: AuthRequest) -> Decision:
    """The decision of the principal's identity-based policies on one request: explicit deny,
    else allow, else implicit deny."""
    context = _context_of(request)
    matched: dict[str, list[str]] = {"Allow": [], "Deny": []}
    for name, document in policies:
        for sid, statement, variables in _statements(name, document):
            if not isinstance(statement, Mapping) or statement.get("Effect") not in matched:
                continue  # a malformed statement or Effect never applies
            if _statement_matches(statement, request.action, request.resource, context, variables):
                matched[statement["Effect"]].append(sid)
    if matched["Deny"]:
        return Decision(False, "explicit-deny", tuple(matched["Deny"]))
    if matched["Allow"]:
        return Decision(True, "allow", tuple(matched["Allow"]))
    return Decision(False, "implicit-deny", ())
