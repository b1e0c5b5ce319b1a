"""The kit's ``relaystore.testing.cases.outputs`` on every built-in backend."""

from relaystore.testing.cases.outputs import *  # noqa: F403
from tests.conformance.factories import FACTORIES as RELAYSTORE_FACTORIES  # noqa: F401
