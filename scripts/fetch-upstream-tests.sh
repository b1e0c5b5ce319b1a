#!/usr/bin/env bash
# Unpack the OpenAI Agents SDK source distribution (it ships its tests/) into .cache/upstream,
# so tests/integrations/test_openai_agents_upstream.py can run them against RelaySession.
# Nothing here is committed: .cache/ is ignored.
set -euo pipefail
VERSION="${AGENTS_VERSION:-0.24.0}"
PYTHON="${PYTHON:-.venv/bin/python}"
DEST=".cache/upstream"
TREE="$DEST/openai_agents-$VERSION"
if [ -d "$TREE/tests/memory" ]; then
    echo "$TREE is there"
    exit 0
fi
mkdir -p "$DEST"
"$PYTHON" -m pip download --quiet --no-binary :all: --no-deps "openai-agents==$VERSION" -d "$DEST"
tar -xzf "$DEST/openai_agents-$VERSION.tar.gz" -C "$DEST"
# the installed wheel must be what the tests import, not the sdist's own copy
rm -rf "$TREE/src"
echo "unpacked $TREE"
