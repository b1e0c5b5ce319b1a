"""The kit's ``relaystore.testing.cases.checkpoints`` on every built-in backend."""

from relaystore.testing.cases.checkpoints import *  # noqa: F403
from tests.conformance.factories import FACTORIES as RELAYSTORE_FACTORIES  # noqa: F401
