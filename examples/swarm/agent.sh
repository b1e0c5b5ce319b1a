#!/bin/sh
# A sub-agent in plain shell + curl: proof that any language can join the swarm.
# Reads each of $IN_REFS, uploads its notes as a blob, and emits an artifact that carries the blob.
# Environment: RELAYSTORE_URL, RELAYSTORE_TOKEN, IN_REFS, TASK_ID, ATTEMPT, PRODUCER.
set -eu
auth="Authorization: Bearer $RELAYSTORE_TOKEN"
notes=""
parents=""
for ref in $IN_REFS; do
    record=$(curl -fsS -H "$auth" "$RELAYSTORE_URL/v1/outputs/$ref")
    notes="$notes$record
"
    parents="$parents${parents:+,}\"$ref\""
done
blob=$(printf '%s' "notes of $PRODUCER: $notes" |
    curl -fsS -H "$auth" -H "Content-Type: text/plain" --data-binary @- "$RELAYSTORE_URL/v1/blobs")
sha=$(printf '%s' "$blob" | sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p')
size=$(printf '%s' "$blob" | sed -n 's/.*"size":\([0-9]*\).*/\1/p')
body=$(cat <<JSON
{"task_id": "$TASK_ID", "attempt": $ATTEMPT, "producer_agent": "$PRODUCER",
 "event": {"type": "artifact", "name": "notes",
           "content": {"kind": "blob", "sha256": "$sha", "size": $size, "mime": "text/plain"}},
 "parent_refs": [$parents]}
JSON
)
answer=$(curl -fsS -H "$auth" -H "Content-Type: application/json" --data "$body" "$RELAYSTORE_URL/v1/outputs")
printf '%s\n' "$answer" | sed -n 's/.*"out_id":"\(out-[0-9a-f]*\)".*/\1/p'
