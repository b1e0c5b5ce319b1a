"""The kit's ``relaystore.testing.cases.blobs`` on every built-in backend."""

from relaystore.testing.cases.blobs import *  # noqa: F403
from tests.conformance.factories import FACTORIES as RELAYSTORE_FACTORIES  # noqa: F401
