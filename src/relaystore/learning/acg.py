"""ACG (automatic context-graph) learning: PromptIR, learning keys, windows and stability.

As NeMo Relay's ``ir_builder.rs``, ``acg_profile.rs``, ``acg_learner.rs`` and ``stability.rs``:
each LLM call's annotated request becomes a :class:`PromptIR` (its prompt split into spans), the
IRs are kept in a bounded observation window per *learning key* (agent, model, system prompt and
tool set), and each window is analysed for which spans are stable across calls and how long the
stable prefix is (what a provider could cache).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import rfc8785

from relaystore.models.adaptive import (
    PromptBlock,
    PromptIR,
    RunRecord,
    SpanScore,
    StabilityAnalysisResult,
    ToolSchemaHash,
)
from relaystore.models.common import ns_to_rfc3339

DEFAULT_OBSERVATION_WINDOW = 100
DEFAULT_STABLE_THRESHOLD = 0.95
DEFAULT_SEMI_STABLE_THRESHOLD = 0.50
DEFAULT_FULL_CONFIDENCE_AT = 20
STABLE_SCAFFOLD = "stable-scaffold"
UNSCAFFOLDED_PART_LEN = 16  # seed/system/tools of a request without scaffold are cut to this

# Rust's char::is_whitespace (Unicode White_Space); Python's isspace() also accepts U+001C..U+001F.
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_CLASS_ORDER = {"variable": 0, "semi_stable": 1, "stable": 2}


# --------------------------------------------------------------------------- helpers


def sha256_hex(data: str | bytes) -> str:
    """``"sha256:"`` + lowercase hex digest, NeMo Relay's digest form."""
    return "sha256:" + hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def jcs(value: Any) -> str:
    """RFC 8785 canonical JSON text."""
    return rfc8785.dumps(value).decode()


def compact_json(value: Any) -> str:
    """serde_json's compact form: no spaces, non-ASCII kept, object keys as given."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def normalize_whitespace(text: str) -> str:
    """Trim; collapse each run of non-newline whitespace to one space, or drop it when a newline
    follows; keep newlines."""
    out: list[str] = []
    pending_space = False
    for ch in _trim(text):
        if ch == "\n":
            pending_space = False
            out.append(ch)
        elif ch in _WHITESPACE:
            pending_space = True
        else:
            if pending_space:
                out.append(" ")
                pending_space = False
            out.append(ch)
    return "".join(out)


def _trim(text: str) -> str:
    start, end = 0, len(text)
    while start < end and text[start] in _WHITESPACE:
        start += 1
    while end > start and text[end - 1] in _WHITESPACE:
        end -= 1
    return text[start:end]


def now_rfc3339_z() -> str:
    """UTC now as chrono serializes a ``DateTime<Utc>`` (PromptIR ``created_at``): ends in ``Z``."""
    return ns_to_rfc3339(time.time_ns())


# --------------------------------------------------------------------------- content text


def _part_text(part: Any) -> str | None:
    """Text of one content part for a block: images are dropped, refusals keep their text, other
    parts become compact JSON."""
    if isinstance(part, dict):
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            return part["text"]
        if kind in ("image", "image_url"):
            return None
        if kind == "refusal" and isinstance(part.get("refusal"), str):
            return part["refusal"]
    return compact_json(part)


def content_text(content: Any) -> str:
    """Block text of a message's content: a string, or its parts joined by newlines, normalized."""
    if content is None:
        return ""
    if isinstance(content, str):
        return normalize_whitespace(content)
    if isinstance(content, list):
        texts = [t for t in (_part_text(p) for p in content) if t is not None]
        return normalize_whitespace("\n".join(texts))
    return normalize_whitespace(compact_json(content))


def _seed_part_text(part: Any) -> str:
    if isinstance(part, dict):
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            return part["text"]
        if kind in ("image", "image_url"):
            return _image_marker(part)
        if kind == "refusal" and isinstance(part.get("refusal"), str):
            return part["refusal"]
    return compact_json(part)


def _image_marker(part: dict[str, Any]) -> str:
    image = part.get("image_url", part)
    url = image.get("url", "") if isinstance(image, dict) else str(image)
    detail = image.get("detail") if isinstance(image, dict) else None
    return f"[image:{detail or 'none'}:{sha256_hex(url)}]"


def seed_text(content: Any) -> str:
    """Text hashed into a seed: parts joined by newlines, images as ``[image:{detail}:{sha}]``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_seed_part_text(p) for p in content)
    return compact_json(content)


# --------------------------------------------------------------------------- IR construction


@dataclass
class _Builder:
    """Accumulates blocks; span ids are ``{role}-{i}[-{suffix}]`` with ``i`` the block's position."""

    blocks: list[PromptBlock] = field(default_factory=list)

    def add(
        self, role: str, provenance: str, content: str, content_type: str = "text", suffix: Any = None
    ) -> None:
        i = len(self.blocks)
        span = f"{role}-{i}" if suffix in (None, "") else f"{role}-{i}-{suffix}"
        self.blocks.append(
            PromptBlock(
                span_id=span,
                sequence_index=i,
                role=role,  # type: ignore[arg-type]
                content=content,
                content_type=content_type,  # type: ignore[arg-type]
                provenance=provenance,  # type: ignore[arg-type]
            )
        )


def _tool_name(tool: Any) -> str:
    if isinstance(tool, dict):
        function = tool.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return function["name"]
        if isinstance(tool.get("name"), str):
            return tool["name"]
    return ""


def _add_scaffold(builder: _Builder, request: dict[str, Any]) -> None:
    for tool in request.get("tools") or []:
        builder.add("system", "system", normalize_whitespace(jcs(tool)), "tool_schema", _tool_name(tool))
    if request.get("response_format") is not None:
        builder.add(
            "system", "system", jcs(request["response_format"]), "structured_output", "structured-output"
        )


def _add_message(builder: _Builder, message: dict[str, Any]) -> None:
    role = message.get("role")
    content = message.get("content")
    if role == "system":
        builder.add("system", "system", content_text(content))
    elif role == "developer":
        builder.add("system", "developer", content_text(content), suffix="developer")
    elif role == "user":
        builder.add("user", "user", content_text(content))
    elif role == "assistant":
        _add_assistant(builder, message)
    elif role == "tool":
        builder.add("tool", "tool", content_text(content), "tool_result", message.get("tool_call_id"))
    elif role == "function":
        builder.add("tool", "tool", content_text(content), suffix=message.get("name"))
    elif role == "tool_call":
        builder.add("assistant", "developer", jcs(message), suffix=message.get("name"))
    elif role == "tool_result":
        builder.add("tool", "tool", jcs(message), "tool_result", message.get("call_id"))
    elif role == "provider_native":
        builder.add("user", "developer", jcs(message), suffix=message.get("kind"))


def _add_assistant(builder: _Builder, message: dict[str, Any]) -> None:
    content = message.get("content")
    if content is not None:
        builder.add("assistant", "developer", content_text(content))
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else (call or {}).get("name")
        builder.add("assistant", "developer", normalize_whitespace(jcs(call)), suffix=name)


def _is_scaffold_message(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") in ("system", "developer")


def build_prompt_ir(
    request: dict[str, Any], *, created_at: str | None = None, ir_id: str | None = None
) -> PromptIR:
    """The PromptIR of one annotated request (as NeMo Relay's ``ir_builder``).

    Blocks, in order: ``instructions``; leading system/developer messages; one ``tool_schema``
    block per tool and a ``structured_output`` block for ``response_format``; the other messages.
    Raises :class:`ValueError` for a request that is not a JSON object with a message list.
    """
    if not isinstance(request, dict) or not isinstance(request.get("messages", []), list):
        raise ValueError("annotated request must be an object with a messages list")
    builder = _Builder()
    if request.get("instructions") is not None:
        builder.add("system", "system", content_text(request["instructions"]), suffix="instructions")
    messages = request.get("messages") or []
    first_other = next((i for i, m in enumerate(messages) if not _is_scaffold_message(m)), len(messages))
    for message in messages[:first_other]:
        _add_message(builder, message)
    _add_scaffold(builder, request)
    for message in messages[first_other:]:
        if isinstance(message, dict):
            _add_message(builder, message)
    return PromptIR(
        ir_id=ir_id or str(uuid.uuid4()),
        blocks=builder.blocks,
        tool_schema_hashes=_tool_hashes(request),
        structured_output_schema_id=_response_format_id(request),
        source_request_hash=sha256_hex(jcs(request)),
        created_at=created_at or now_rfc3339_z(),
    )


def _tool_hashes(request: dict[str, Any]) -> list[ToolSchemaHash] | None:
    tools = request.get("tools")
    if not tools:
        return None
    return [ToolSchemaHash(tool_name=_tool_name(t), schema_hash=sha256_hex(jcs(t))) for t in tools]


def _response_format_id(request: dict[str, Any]) -> str | None:
    fmt = request.get("response_format")
    return None if fmt is None else sha256_hex(jcs(fmt))


# --------------------------------------------------------------------------- learning key


def _system_digest(request: dict[str, Any]) -> str:
    parts: list[dict[str, Any]] = []
    if request.get("instructions") is not None:
        parts.append({"source": "instructions", "content": request["instructions"]})
    for message in request.get("messages") or []:
        if _is_scaffold_message(message):
            parts.append({"source": "message", "role": message["role"], "content": message.get("content")})
    return sha256_hex(jcs(parts)) if parts else "no-system"


def _tools_digest(request: dict[str, Any]) -> str:
    tools = request.get("tools") or []
    if not tools:
        return "no-tools"
    joined = "|".join(jcs(t) for t in tools)
    return sha256_hex(joined) if joined else "tools-unavailable"


def _message_seed(message: dict[str, Any]) -> str:
    role = message.get("role")
    content = message.get("content")
    if role == "user":
        return "user:" + sha256_hex(seed_text(content))
    if role == "assistant":
        return (
            "assistant:" + sha256_hex(seed_text(content)) if content is not None else "assistant:no-content"
        )
    if role == "tool":
        return "tool:" + sha256_hex(seed_text(content))
    if role == "function":
        return "function:" + sha256_hex(jcs({"name": message.get("name"), "content": content}))
    if role == "tool_call":
        return "tool-call:" + sha256_hex(
            jcs({"name": message.get("name"), "arguments": message.get("arguments")})
        )
    if role == "tool_result":
        return "tool-result:" + sha256_hex(seed_text(message.get("output")))
    if role == "provider_native":
        value = {
            "provider": message.get("provider"),
            "kind": message.get("kind"),
            "value": message.get("value"),
        }
        return "native:" + sha256_hex(jcs(value))
    return "no-seed"


def _seed(request: dict[str, Any]) -> str:
    for message in request.get("messages") or []:
        if isinstance(message, dict) and not _is_scaffold_message(message):
            return _message_seed(message)
    return "no-seed"


def learning_key(agent_id: str, request: dict[str, Any]) -> str:
    """The ACG learning key of a request (as NeMo Relay's ``acg_profile``):
    ``{agent}::model={model}::seed={seed}::system={sys}::tools={tools}[::response_format={rf}]``.

    Requests with a scaffold (system text, tools or a response format) share the seed
    ``stable-scaffold``; others are keyed by a 16-character digest of their first message.
    """
    system, tools = _system_digest(request), _tools_digest(request)
    fmt = _response_format_id(request)
    if system != "no-system" or request.get("tools") or fmt is not None:
        seed = STABLE_SCAFFOLD
    else:
        cut = UNSCAFFOLDED_PART_LEN
        seed, system, tools = _seed(request)[:cut], system[:cut], tools[:cut]
    model = request.get("model") or "unknown"
    key = f"{agent_id}::model={model}::seed={seed}::system={system}::tools={tools}"
    return key if fmt is None else f"{key}::response_format={fmt}"


# --------------------------------------------------------------------------- windows


def push_window(window: Sequence[PromptIR] | None, new: Iterable[PromptIR], size: int) -> list[PromptIR]:
    """Pure: ``window`` with ``new`` appended, dropping the oldest so at most ``size`` remain."""
    out = list(window or [])
    for ir in new:
        while out and len(out) >= size:
            out.pop(0)
        out.append(ir)
    return out


def run_observations(agent_id: str, run: RunRecord) -> dict[str, list[PromptIR]]:
    """The run's IRs grouped by learning key, keys in order of first use. LLM calls without an
    annotated request, or whose request cannot be read, are skipped (as NeMo Relay)."""
    grouped: dict[str, list[PromptIR]] = {}
    for call in run.calls:
        if call.kind != "llm" or not isinstance(call.annotated_request, dict):
            continue
        try:
            ir = build_prompt_ir(call.annotated_request)
            key = learning_key(agent_id, call.annotated_request)
        except (ValueError, TypeError):
            continue
        grouped.setdefault(key, []).append(ir)
    return grouped


# --------------------------------------------------------------------------- stability


@dataclass(frozen=True)
class StabilityConfig:
    """Thresholds of ``analyze_stability`` (NeMo Relay's defaults)."""

    stable_threshold: float = DEFAULT_STABLE_THRESHOLD
    semi_stable_threshold: float = DEFAULT_SEMI_STABLE_THRESHOLD
    full_confidence_at: int = DEFAULT_FULL_CONFIDENCE_AT


@dataclass
class _SpanSeen:
    contents: Counter[str] = field(default_factory=Counter)
    present: int = 0
    first_index: int = 0


def _classify(score: float, config: StabilityConfig) -> str:
    if score >= config.stable_threshold:
        return "stable"
    if score >= config.semi_stable_threshold:
        return "semi_stable"
    return "variable"


def span_scores(window: Sequence[PromptIR], config: StabilityConfig) -> list[SpanScore]:
    """Per span: share of observations holding it times the share of its most common content."""
    n = len(window)
    seen: dict[str, _SpanSeen] = {}
    for ir in window:
        for block in ir.blocks:
            span = seen.get(block.span_id)
            if span is None:
                span = seen[block.span_id] = _SpanSeen(first_index=block.sequence_index)
            span.contents[hashlib.sha256(block.content.encode()).hexdigest()] += 1
            span.present += 1
            span.first_index = min(span.first_index, block.sequence_index)
    scores = []
    for span_id, span in seen.items():
        top = max(span.contents.values())
        score = (span.present / n) * (top / span.present)
        full = config.full_confidence_at
        confidence = 1.0 if full == 0 else min(1.0, span.present / full)
        scores.append((span.first_index, span_id, score, confidence, span.present))
    ranked = [
        SpanScore(
            span_id=span_id,
            classification=_classify(score, config),  # type: ignore[arg-type]
            score=score,
            confidence=confidence,
            observation_count=present,
        )
        for _, span_id, score, confidence, present in scores
    ]
    first = {span_id: index for index, span_id, *_ in scores}
    ranked.sort(key=lambda s: (first[s.span_id], _CLASS_ORDER[s.classification], s.span_id))
    return ranked


def block_key(block: PromptBlock) -> str:
    """Identity of a block for prefix matching: compact JSON ``[span_id, role, content_type, content]``."""
    return compact_json([block.span_id, block.role, block.content_type, block.content])


def stable_prefix_length(window: Sequence[PromptIR], config: StabilityConfig) -> int:
    """Depth to which a qualified majority (≥ ceil(stable·N), at least ⌊N/2⌋+1) of observations
    share identical leading blocks."""
    n = len(window)
    required = min(max(math.ceil(config.stable_threshold * n), n // 2 + 1), max(n, 1))
    members = list(window)
    depth = 0
    while True:
        groups: dict[str, list[PromptIR]] = {}
        for ir in members:
            if depth < len(ir.blocks):
                groups.setdefault(block_key(ir.blocks[depth]), []).append(ir)
        winner = next((g for g in groups.values() if len(g) >= required), None)
        if winner is None:
            return depth
        members = winner
        depth += 1


def _dominant(digests: Iterable[str]) -> str | None:
    counts = Counter(digests)
    if not counts:
        return None
    return min(counts, key=lambda d: (-counts[d], d))


def prefix_fingerprint(window: Sequence[PromptIR], length: int) -> str | None:
    """The most common digest of the first ``length`` block keys (ties: smallest); None for 0."""
    if length == 0:
        return None
    return _dominant(
        sha256_hex("\n".join(block_key(b) for b in ir.blocks[:length]))
        for ir in window
        if len(ir.blocks) >= length
    )


def _scaffold_length(ir: PromptIR) -> int:
    count = 0
    for block in ir.blocks:
        if block.role != "system" and block.content_type not in ("tool_schema", "structured_output"):
            break
        count += 1
    return count


def learner_fingerprint(key: str, window: Sequence[PromptIR], length: int, generic: str | None) -> str | None:
    """The fingerprint bound to a learning key: the dominant ``sha256(key \\n prefix \\n bind)``
    where ``bind`` is ``stable-scaffold`` when the stable prefix lies within the observation's
    scaffold and its ``source_request_hash`` otherwise (observations without one are skipped)."""
    if generic is None:
        return None
    candidates = []
    for ir in window:
        bind = STABLE_SCAFFOLD if length <= _scaffold_length(ir) else ir.source_request_hash
        if bind is not None:
            candidates.append(sha256_hex(f"{key}\n{generic}\n{bind}"))
    return _dominant(candidates)


def analyze_stability(
    window: Sequence[PromptIR], config: StabilityConfig = StabilityConfig(), *, key: str | None = None
) -> StabilityAnalysisResult:
    """Stability of a window (as NeMo Relay's ``analyze_stability``), with the fingerprint rebound
    to ``key`` when given (as its ``AcgLearner``) or the generic prefix fingerprint otherwise."""
    length = stable_prefix_length(window, config) if window else 0
    fingerprint = prefix_fingerprint(window, length)
    if key is not None:
        fingerprint = learner_fingerprint(key, window, length, fingerprint)
    return StabilityAnalysisResult(
        scores=span_scores(window, config) if window else [],
        stable_prefix_length=length,
        stable_prefix_fingerprint=fingerprint,
        total_observations=len(window),
    )


def best_key(results: dict[str, StabilityAnalysisResult]) -> str | None:
    """The key with the largest (stable prefix length, observations); the first one seen on ties."""
    best: str | None = None
    for key, result in results.items():
        rank = (result.stable_prefix_length, result.total_observations)
        if best is None or rank > (results[best].stable_prefix_length, results[best].total_observations):
            best = key
    return best
