"""The sink's fast path (detection_decoder) against the contract (messages.Detection):
whatever the fast path accepts, pydantic accepts with the same values; whatever it
refuses goes to pydantic, whose answer the caller gets."""

from __future__ import annotations

import copy
import json
import math
import re
import uuid
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from soundscape.detection_decoder import (
    FastDetection,
    _DECODER,
    decode_detection,
    struct_json,
)
from soundscape.envelope import chunk_id_for
from soundscape.messages import Detection, MessageError, parse
from soundscape.sinks import staging

START = 1_700_000_000 * 10**9


def message(**overrides: Any) -> dict[str, Any]:
    """A valid detection message as JSON values: a windowed result with every field."""
    value: dict[str, Any] = {
        "schema_version": 1,
        "chunk_id": str(chunk_id_for("st-1", START)),
        "station_id": "st-1",
        "chunk_start": START,
        "sample_rate": 48000,
        "source": "live",
        "bundle_version": "birdnet-2.4",
        "top_k": [
            {"label": "wren", "probability": 0.25, "common_name": "Wren",
             "window_start_s": 0.0, "window_end_s": 3.0, "in_range": True},
            {"label": "robin", "probability": 0.75, "common_name": None,
             "window_start_s": 3.0, "window_end_s": 6.0, "in_range": None},
            {"label": "tit", "probability": 0.75},
        ],
        "detections": [{"label": "robin", "probability": 0.75, "window_start_s": 3.0,
                        "window_end_s": 6.0}],
        "audio": {"rms_dbfs": -30.5, "noise_floor_dbfs": -60.0, "peak_dbfs": -3.0,
                  "clipping_ratio": 0.0, "silence_ratio": 0.125,
                  "spectral_centroid_hz": 2500.0, "dc_offset": -0.001},
        "timing": {"captured_at": START + 10**10, "published_at": START + 10**10 + 1,
                   "consumed_at": START + 10**10 + 2, "scored_at": START + 10**10 + 3,
                   "decode_ms": 1.5, "features_ms": 2.0, "inference_ms": 30.25,
                   "branch_ms": {"birdnet": 30.0}},
        "batch_size": 32,
        "worker_id": "w-1",
        "windows": [{"start_s": 0.0, "end_s": 3.0,
                     "top_k": [{"label": "wren", "probability": 0.25}]},
                    {"start_s": 3.0, "end_s": 6.0}],
        "embedding_f16": "AAA8AA==",
        "audio_source": {"partition": 3, "offset": 12345},
    }
    return value | overrides


def encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


def both(data: bytes) -> tuple[FastDetection | Exception, Detection | Exception]:
    try:
        fast: FastDetection | Exception = _DECODER.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        fast = exc
    try:
        slow: Detection | Exception = parse(Detection, data)
    except MessageError as exc:
        slow = exc
    return fast, slow


# ---- the two definitions, field by field --------------------------------------------------
_CONSTRAINTS = {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                "minLength", "maxLength", "minItems", "maxItems", "minProperties",
                "maxProperties", "enum", "format", "pattern", "additionalProperties"}


def _constraints(schema: dict[str, Any], defs: dict[str, Any], path: str = "",
                 out: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """A JSON schema as {field path: its constraints}, with the two generators' spellings
    made one (const vs a one-value enum, `^...$` vs `\\A(?:...)\\Z`); titles, descriptions
    and defaults left out."""
    out = {} if out is None else out
    if "$ref" in schema:
        return _constraints(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, path, out)
    if "anyOf" in schema:
        for sub in schema["anyOf"]:
            _constraints(sub, defs, f"{path}|{sub.get('type', 'object')}", out)
        return out
    found = {k: v for k, v in schema.items() if k in _CONSTRAINTS and not isinstance(v, dict)}
    if "const" in schema:
        found["enum"] = [schema["const"]]
    if "enum" in found:
        found.pop("type", None)
    if "pattern" in found:
        bare = (re.fullmatch(r"\\A\(\?:(.*)\)\\Z", found["pattern"])
                or re.fullmatch(r"\^(.*)\$", found["pattern"]))
        found["pattern"] = bare.group(1) if bare else found["pattern"]
    if "properties" in schema:
        found["fields"] = sorted(schema["properties"])
        found["required"] = sorted(schema.get("required", []))
        for name, sub in schema["properties"].items():
            _constraints(sub, defs, f"{path}.{name}", out)
    for key, suffix in (("additionalProperties", "{value}"), ("propertyNames", "{key}"),
                        ("items", "[]")):
        if isinstance(schema.get(key), dict):
            _constraints(schema[key], defs, path + suffix, out)
    out[path] = found
    return out


def test_the_structs_have_the_contracts_fields_and_limits() -> None:
    """A field added to messages.py, or a limit changed there, must be copied here: the
    JSON schemas pydantic and msgspec make of the two are compared path by path."""
    contract = Detection.model_json_schema()
    (root,), defs = msgspec.json.schema_components([FastDetection])
    want = _constraints(contract, contract.get("$defs", {}))
    got = _constraints(root, defs)
    assert len(want) > 70 and want[".sample_rate"]["maximum"] == 384_000
    assert got == want


def test_a_valid_message_takes_the_fast_path_with_the_contracts_values() -> None:
    data = encode(message())
    decoded = decode_detection(data)
    assert isinstance(decoded, FastDetection)
    assert decoded.to_detection() == parse(Detection, data)
    # top_k sorted best first, stably (as Detection._sorted): robin before tit
    assert [s.label for s in decoded.top_k] == ["robin", "tit", "wren"]
    assert decoded.top.label == "robin"
    assert isinstance(decoded.chunk_id, uuid.UUID)


def test_fusion_results_and_defaults() -> None:
    value = message()
    for name in ("windows", "embedding_f16", "audio_source", "detections", "schema_version"):
        del value[name]
    value["top_k"] = [{"label": "wren", "probability": 0.5}]
    decoded = decode_detection(encode(value))
    assert isinstance(decoded, FastDetection)
    assert decoded.detections == [] and decoded.windows is None
    assert decoded.to_detection() == parse(Detection, encode(value))


@pytest.mark.parametrize("overrides", [
    {"station_id": "st-1\n"},  # `$` in re.search would let this through
    {"station_id": "ST-1"},
    {"extra": 1},
    {"sample_rate": 7999},
    {"source": "archive"},
    {"top_k": []},
    {"top_k": [{"label": "x", "probability": 0.5, "window_start_s": 1.0}]},
    {"top_k": [{"label": "x", "probability": 0.5, "window_start_s": 2.0, "window_end_s": 1.0}]},
    {"windows": [{"start_s": 2.0, "end_s": 1.0}]},
    {"schema_version": 2},
])
def test_what_the_contract_refuses_is_refused_with_pydantics_reason(overrides: dict[str, Any]) -> None:
    data = encode(message(**overrides))
    fast, slow = both(data)
    assert isinstance(fast, Exception) and isinstance(slow, MessageError)
    with pytest.raises(MessageError) as raised:
        decode_detection(data)
    assert str(raised.value) == str(slow)


def test_lax_inputs_pydantic_accepts_still_pass_through_it() -> None:
    data = encode(message(sample_rate="48000", batch_size=32.0))
    decoded = decode_detection(data)
    assert isinstance(decoded, Detection) and decoded.sample_rate == 48000


def test_empty_and_broken_values_are_message_errors() -> None:
    for data in (None, b"", b"{", b"[]", b"null"):
        with pytest.raises(MessageError):
            decode_detection(data)


# ---- the property: fast accepts => pydantic accepts, with equal values -------------------
_PATHS: list[tuple[Any, ...]] = [
    ("chunk_id",), ("station_id",), ("chunk_start",), ("sample_rate",), ("source",),
    ("bundle_version",), ("top_k",), ("top_k", 0), ("top_k", 0, "label"),
    ("top_k", 0, "probability"), ("top_k", 0, "common_name"), ("top_k", 0, "window_start_s"),
    ("top_k", 0, "window_end_s"), ("top_k", 0, "in_range"), ("detections",),
    ("detections", 0, "probability"), ("audio",), ("audio", "rms_dbfs"),
    ("audio", "clipping_ratio"), ("audio", "spectral_centroid_hz"), ("audio", "dc_offset"),
    ("timing", "captured_at"), ("timing", "decode_ms"), ("timing", "branch_ms"),
    ("batch_size",), ("worker_id",), ("windows",), ("windows", 0, "start_s"),
    ("windows", 0, "top_k"), ("embedding_f16",), ("audio_source",),
    ("audio_source", "partition"), ("audio_source", "offset"), ("schema_version",),
]
_DELETE = object()
_EDGES: list[Any] = [
    None, True, False, 0, 1, -1, 0.0, 1.0, 5.0, 10.0, 10.5, -0.0, 1e-300, 1e300,
    7999, 8000, 384000, 384001, 2**63 - 1, 2**63, -(2**63), 2**80, 86_400_000.0,
    86_400_001.0, -200.0, -200.5, 192_000.0, 192_001.0, math.nan, math.inf, -math.inf,
    "", "x", "x" * 200, "x" * 201, "st-1", "st-1\n", "\nst-1", "ST-1", "st_1", "a" * 64,
    "a" * 65, "live", "replay", "48000", "5.0", "1e3", "true", "null", "é",
    str(uuid.UUID(int=7)), uuid.UUID(int=7).hex, f"urn:uuid:{uuid.UUID(int=7)}",
    f"{{{uuid.UUID(int=7)}}}", "AAA", "AAA8", [], [{}], {}, {"a": 1.0}, {"x" * 101: 1.0},
    {"a": -1.0}, {"a": "1"}, [{"label": "a", "probability": 0.5}],
    {"label": "a", "probability": 2}, {"start_s": 0, "end_s": 0}, {"partition": 1, "offset": 2},
    1_000_000, 1_000_001,
    # collection and text sizes at and past their limits
    [{"label": "a", "probability": 0.5}] * 20, [{"label": "a", "probability": 0.5}] * 21,
    [{"label": "a", "probability": 0.5}] * 100, [{"label": "a", "probability": 0.5}] * 101,
    [{"start_s": 0, "end_s": 1}] * 64, [{"start_s": 0, "end_s": 1}] * 65,
    {f"k{i}": 1.0 for i in range(64)}, {f"k{i}": 1.0 for i in range(65)},
    "AAAA" * 16384, "AAAA" * 16385,
    _DELETE,
]


def _mutate(value: Any, path: tuple[Any, ...], new: Any) -> None:
    *parents, last = path
    for key in parents:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return
    try:
        if new is _DELETE:
            del value[last]
        else:
            value[last] = copy.deepcopy(new)  # the pool's values are shared
    except (KeyError, IndexError, TypeError):
        pass


def _check(data: bytes) -> bool:
    """The property for one message value; whether the fast path took it."""
    fast, slow = both(data)
    if isinstance(fast, FastDetection):
        assert isinstance(slow, Detection), f"fast path took what pydantic refuses: {slow}"
        assert fast.to_detection() == slow
    got: Any
    try:
        got = decode_detection(data)
    except MessageError as exc:
        got = exc
    if isinstance(slow, MessageError):
        assert isinstance(got, MessageError) and str(got) == str(slow)
    else:
        assert not isinstance(got, Exception)
        assert (got.to_detection() if isinstance(got, FastDetection) else got) == slow
    return isinstance(fast, FastDetection)


def test_every_edge_value_in_every_field() -> None:
    """Each field set to each edge value in turn (and removed): thousands of cases."""
    taken = refused = 0
    for path in _PATHS:
        for new in _EDGES:
            value = message()
            _mutate(value, path, new)
            if _check(json.dumps(value).encode()):
                taken += 1
            else:
                refused += 1
    assert taken > 100 and refused > 1000  # both ways exercised


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mutations=st.lists(st.tuples(st.sampled_from(_PATHS),
                                 st.one_of(st.sampled_from(_EDGES), st.text(max_size=5),
                                           st.integers(), st.floats())),
                       max_size=3),
    extra_key=st.one_of(st.none(), st.sampled_from(["", "extra", "label", "chunk_id"])),
)
def test_fast_path_accepts_only_what_pydantic_accepts_alike(
    mutations: list[tuple[tuple[Any, ...], Any]], extra_key: str | None,
) -> None:
    value = message()
    for path, new in mutations:
        _mutate(value, path, new)
    if extra_key is not None:  # an unknown field, or a known one in the wrong place
        _mutate(value, ("audio", extra_key), 0.5)
    _check(json.dumps(value).encode())  # NaN/Infinity tokens too, as a broken worker's


# ---- the rows the sink makes from either ---------------------------------------------------
def test_rows_from_the_fast_path_equal_those_from_the_model() -> None:
    data = encode(message())
    fast, model = decode_detection(data), parse(Detection, data)
    assert isinstance(fast, FastDetection)
    key = fast.chunk_id.bytes
    fast_row, model_row = staging.chunk_row(fast), staging.chunk_row(model)
    json_columns = {25, 26, 28}  # top_k, branch_ms, windows
    for i, (a, b) in enumerate(zip(fast_row, model_row, strict=True)):
        assert (json.loads(a) == json.loads(b)) if i in json_columns else a == b, i
    assert staging.encode_chunks([(key, fast)], jsonb=True) == staging.encode_chunks(
        [(key, model)], jsonb=True)
    assert staging.encode_detections([(key, fast)]) == staging.encode_detections([(key, model)])
    assert list(staging.detection_rows(fast)) == list(staging.detection_rows(model))


def test_struct_json_leaves_out_none_fields_and_other_values_to_the_caller() -> None:
    fast = decode_detection(encode(message()))
    assert isinstance(fast, FastDetection)
    assert json.loads(struct_json(fast.top_k) or b"")[1] == {
        "label": "tit", "probability": 0.75}
    assert struct_json({"a": 1.0}) is None and struct_json([]) is None
