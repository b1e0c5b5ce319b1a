"""The kit's ``relaystore.testing.cases.stateful`` on every built-in backend."""

from relaystore.testing.cases.stateful import *  # noqa: F403
from tests.conformance.factories import FACTORIES as RELAYSTORE_FACTORIES  # noqa: F401
