"""The kit's ``relaystore.testing.cases.corruption`` on every built-in backend."""

from relaystore.testing.cases.corruption import *  # noqa: F403
from tests.conformance.factories import FACTORIES as RELAYSTORE_FACTORIES  # noqa: F401
